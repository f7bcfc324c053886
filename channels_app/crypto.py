"""Encryption at rest for provider secrets (Fernet, keys from ``NOTIFYHUB_SECRETS_KEY``).

Several comma-separated keys may be given: the first encrypts, all decrypt, so keys can be
rotated: ``rotate()`` re-encrypts a token with the first key, and ``manage.py rotate_secrets``
does it for every stored secret (docs/security.md).
"""
import json
from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from channels_app.errors import ChannelConfigurationError


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "NOTIFYHUB_SECRETS_KEY must be one or more comma-separated Fernet keys "
            "(python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')."
        ) from exc


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.NOTIFYHUB_SECRETS_KEYS))


def encrypt_secrets(secrets: dict) -> str:
    if not secrets:
        return ""
    return fernet().encrypt(json.dumps(secrets, sort_keys=True).encode()).decode()


def decrypt_secrets(token: str) -> dict:
    if not token:
        return {}
    try:
        return json.loads(fernet().decrypt(token.encode()))
    except InvalidToken as exc:
        raise ChannelConfigurationError(
            "Channel secrets cannot be decrypted: NOTIFYHUB_SECRETS_KEY does not hold the key they were "
            "written with."
        ) from exc


def rotate(token: str) -> str:
    return fernet().rotate(token.encode()).decode() if token else ""


def is_current(token: str) -> bool:
    """True if ``token`` is readable with the newest key alone (nothing to rotate)."""
    if not token:
        return True
    try:
        _fernet(tuple(settings.NOTIFYHUB_SECRETS_KEYS[:1])).decrypt(token.encode())
    except InvalidToken:
        return False
    return True


def mask(value: str) -> str:
    """Show an operator that a secret is set without showing it."""
    if not value:
        return ""
    value = str(value)
    return "•" * 8 + (value[-4:] if len(value) >= 12 else "")
