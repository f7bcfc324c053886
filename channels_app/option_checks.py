"""Checks on a provider account's options that the backends' own schemas do not make: unknown
keys (a typo such as ``secuirty`` would otherwise be dropped silently and the default used) and
the credentials each anymail ESP requires. Shared by the API and the admin form, so both refuse
the same accounts with the same words."""
import difflib
import re
from collections.abc import Mapping

from channels_app.base import ChannelBackend

_CREDENTIAL_WORDS = ("key", "token", "secret", "password")
_MISSING_SETTING = re.compile(r"ANYMAIL = \{'([A-Z0-9_]+)'")


def _hint(name: str, choices) -> str:
    close = difflib.get_close_matches(name, sorted(choices), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def unknown_option_errors(backend: type[ChannelBackend], options: Mapping) -> dict[str, list[str]]:
    """``{key: [message]}`` for each option the backend does not have, with a "did you mean"
    hint when one known option is close."""
    known = set(backend.option_fields())
    errors = {}
    for key in sorted(set(options) - known):
        known_list = ", ".join(sorted(known - backend.secret_fields)) or "none"
        errors[key] = [f"Unknown option of {backend.name}.{_hint(key, known)} Options: {known_list}."]
    return errors


def anymail_credential_errors(backend: type[ChannelBackend], options: Mapping) -> dict[str, list[str]]:
    """For an ``anymail.<esp>`` account: every setting the ESP's anymail backend requires and
    ``options`` (``esp_settings`` + ``esp_credentials``) lacks, found by building that backend
    the way the worker will — anymail raises on the first missing setting, so the missing ones
    are collected one at a time. ``{"esp_credentials": [...]}`` and/or ``{"esp_settings": [...]}``."""
    esp = getattr(backend, "esp", "")
    if not esp:
        return {}
    from anymail.exceptions import AnymailConfigurationError, AnymailImproperlyInstalled
    from django.core import mail

    given = {**(options.get("esp_settings") or {}), **(options.get("esp_credentials") or {})}
    prefix = f"{esp.upper()}_"
    missing: list[str] = []
    for _ in range(10):
        try:
            mail.get_connection(f"anymail.backends.{esp}.EmailBackend", fail_silently=False,
                                **given, **{name: "placeholder" for name in missing})
            break
        except AnymailImproperlyInstalled as exc:
            return {"esp_settings": [str(exc).splitlines()[0]]}
        except AnymailConfigurationError as exc:
            found = _MISSING_SETTING.search(str(exc))
            if not found:
                return {"esp_settings": [str(exc).splitlines()[0]]}
            name = found.group(1).removeprefix(prefix).lower()
            if name in missing:
                break
            missing.append(name)
    errors: dict[str, list[str]] = {}
    for name in missing:
        group = "esp_credentials" if any(word in name for word in _CREDENTIAL_WORDS) else "esp_settings"
        errors.setdefault(group, []).append(f"{backend.name} requires {name!r}.")
    return errors
