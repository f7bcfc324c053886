"""Refuse oversized API bodies before anything reads them."""
from django.conf import settings
from django.http import JsonResponse


class BodySizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            limit = settings.NOTIFYHUB_MAX_BODY_BYTES
            if length > limit:
                return JsonResponse(
                    {"body": [f"The request body is {length} bytes; the limit is {limit} bytes."]}, status=413
                )
        return self.get_response(request)
