"""``Authorization: Api-Key <key>`` authentication and per-view scopes."""
from rest_framework import permissions
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated

from notifyhub.clients.models import ApiKey


class ApiClient:
    """The calling system behind a request; ``request.auth`` is its ``ApiKey``."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, api_key: ApiKey):
        self.api_key = api_key

    def __str__(self):
        return self.api_key.name


class ApiKeyAuthentication(BaseAuthentication):
    keyword = "Api-Key"

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        scheme, _, key = header.partition(" ")
        if scheme != self.keyword:
            return None
        key = key.strip()
        try:
            api_key = ApiKey.objects.get_from_key(key)
        except ApiKey.DoesNotExist:
            raise AuthenticationFailed("Invalid or revoked API key.") from None
        if api_key.has_expired:
            raise AuthenticationFailed("This API key has expired.")
        return ApiClient(api_key), api_key

    def authenticate_header(self, request):
        return self.keyword


class HasScope(permissions.BasePermission):
    """The view names the scope per HTTP method in ``scopes``; the key must carry it."""

    message = "This API key lacks the scope this operation needs."

    def has_permission(self, request, view):
        if request.auth is None:
            raise NotAuthenticated("Send the header Authorization: Api-Key <key>.")
        scope = getattr(view, "scopes", {}).get(request.method)
        if scope is None:
            return False
        if not request.auth.has_scope(scope):
            self.message = f"This API key lacks the {scope!r} scope."
            return False
        return True
