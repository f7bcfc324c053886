"""Writes on API keys."""
from collections.abc import Iterable

from notifyhub.clients.models import ApiKey, validate_scopes


def api_key_create(*, name: str, scopes: Iterable[str]) -> tuple[ApiKey, str]:
    """Create a key; the plain key is returned once and never stored."""
    scopes = sorted(set(scopes))
    validate_scopes(scopes)
    return ApiKey.objects.create_key(name=name, scopes=scopes)


def api_key_revoke(*, api_key: ApiKey) -> None:
    api_key.revoked = True
    api_key.save(update_fields=["revoked"])
