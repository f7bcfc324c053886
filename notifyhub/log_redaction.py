"""Keep secrets that travel in URLs out of the logs.

Aliyun and Tencent cannot sign their delivery reports, so the account's callback token is part
of the URL configured in their console: ``/hooks/channels/<account>/<token>/`` (or, the older
form, ``?token=...``). Anything that logs request lines or paths — gunicorn's access log,
Django's ``django.request`` warnings for 4xx answers — would write the token down. Both go
through :func:`redact`.
"""
import logging
import re

from gunicorn.glogging import Logger

_QUERY_SECRET = re.compile(r"(?i)([?&;](?:callback_)?token=)[^&;\s\"']*")
_PATH_TOKEN = re.compile(r"(/hooks/channels/[^/\s?\"']+/)[^/\s?\"']+")
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with callback tokens in query strings and hook paths replaced."""
    if "token" not in text.lower() and "/hooks/channels/" not in text:
        return text
    return _PATH_TOKEN.sub(rf"\1{REDACTED}", _QUERY_SECRET.sub(rf"\1{REDACTED}", text))


class RedactSecretsFilter(logging.Filter):
    """A logging filter that redacts the formatted message of every record it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class RedactingGunicornLogger(Logger):
    """gunicorn's logger with the request line, path and query string of each access redacted."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "q", "{raw_uri}"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact(atoms[key])
        return atoms
