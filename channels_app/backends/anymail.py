"""E-mail through any ESP that django-anymail ships (``anymail.mailgun``, ``anymail.postmark``...).

One backend class per anymail ESP module is generated here, so a new anymail release brings its
ESPs with it. ``esp_settings`` and the secret ``esp_credentials`` are passed to the anymail
backend as keyword arguments (``api_key``, ``server_token``, ``api_url``...), exactly the names
anymail documents for its ``ANYMAIL`` setting, lower-cased and without the ESP prefix.
"""
import pkgutil
from functools import cache

import requests
from anymail.exceptions import (
    AnymailAPIError,
    AnymailConfigurationError,
    AnymailError,
    AnymailImproperlyInstalled,
    AnymailRecipientsRefused,
)
from django.core import mail
from rest_framework import serializers

from channels_app.backends.email import EmailChannelBackend
from channels_app.errors import (
    ChannelConfigurationError,
    InvalidAddressError,
    PermanentChannelError,
    TransientChannelError,
)
from channels_app.http import TRANSIENT_STATUSES, blocked_url_error
from channels_app.message import OutboundMessage, SendResult
from channels_app.netguard import BlockedURLError, check_outbound_url
from channels_app.outbound import harden_session

NOT_ESPS = frozenset({"base", "base_requests", "console", "test", "sendinblue"})


class AnymailOptions(serializers.Serializer):
    from_email = serializers.EmailField(help_text="From address, verified with the ESP.")
    reply_to = serializers.EmailField(required=False, allow_blank=True, default="")
    esp_settings = serializers.DictField(
        required=False, default=dict,
        help_text='Anymail settings for this ESP, e.g. {"sender_domain": "mg.example.com"} or {"api_url": "..."}.',
    )
    esp_credentials = serializers.DictField(
        child=serializers.CharField(), required=False, default=dict,
        help_text='Secret. Anymail credential settings, e.g. {"api_key": "..."} or {"server_token": "..."}.',
    )

    def validate_esp_settings(self, value):
        api_url = value.get("api_url")
        if api_url:
            try:
                check_outbound_url(api_url, resolve=False)
            except BlockedURLError as exc:
                raise serializers.ValidationError(f"api_url: {exc}") from None
        return value


class AnymailBackend(EmailChannelBackend):
    """Base for the generated per-ESP classes; ``esp`` names the anymail backend module."""

    esp: str = ""
    reports_delivery = True  # through the ESP's tracking webhooks
    Options = AnymailOptions
    secret_fields = frozenset({"esp_credentials"})

    def get_connection(self):
        api_url = self.options.get("esp_settings", {}).get("api_url")
        if api_url:
            try:
                check_outbound_url(api_url)
            except BlockedURLError as exc:
                raise PermanentChannelError(str(exc), code="blocked_url") from exc
        kwargs = {**self.options.get("esp_settings", {}), **self.options.get("esp_credentials", {})}
        try:
            return mail.get_connection(f"anymail.backends.{self.esp}.EmailBackend", fail_silently=False, **kwargs)
        except (AnymailConfigurationError, AnymailImproperlyInstalled) as exc:
            raise ChannelConfigurationError(f"{self.name}: {exc}") from exc

    def open(self) -> None:
        """Connect; an ESP reached over ``requests`` gets the pinned adapter and the CA bundle."""
        super().open()
        session = getattr(self.connection, "session", None)
        if isinstance(session, requests.Session):
            harden_session(session)

    def build(self, message: OutboundMessage):
        email = super().build(message)
        email.metadata = {"notifyhub_delivery": message.delivery_id}
        return email

    def send(self, message: OutboundMessage) -> SendResult:
        self.open()
        email = self.build(message)
        try:
            email.send()
        except BlockedURLError as exc:  # refused where the connection was opened
            raise blocked_url_error(exc, self.options.get("esp_settings", {}).get("api_url") or "") from exc
        except AnymailRecipientsRefused as exc:
            raise InvalidAddressError(str(exc), code="recipient_refused") from exc
        except AnymailAPIError as exc:
            status = getattr(exc, "status_code", None)
            transient = status is None or status in TRANSIENT_STATUSES or status >= 500
            error = TransientChannelError if transient else PermanentChannelError
            # A requests.Response is falsy for 4xx/5xx, so test it against None, not for truth.
            response = getattr(exc, "response", None)
            text = getattr(response, "text", "") if response is not None else ""
            raise error(_first_line(exc), status=status, response=text or "") from exc
        except AnymailError as exc:
            raise PermanentChannelError(_first_line(exc)) from exc
        status = email.anymail_status
        if status.status and status.status & {"rejected", "invalid"}:
            raise PermanentChannelError(f"ESP answered {sorted(status.status)}", code="rejected")
        return SendResult(provider_message_id=status.message_id or "")


def _first_line(exc: Exception) -> str:
    lines = str(exc).splitlines()
    return lines[0] if lines else type(exc).__name__


@cache
def anymail_backends() -> tuple[type[AnymailBackend], ...]:
    import anymail.backends

    classes = []
    for module in pkgutil.iter_modules(anymail.backends.__path__):
        if module.name in NOT_ESPS:
            continue
        name = f"anymail.{module.name}"
        classes.append(type(
            f"Anymail{module.name.title().replace('_', '')}Backend",
            (AnymailBackend,),
            {"name": name, "esp": module.name, "label": f"{module.name.replace('_', ' ').title()} (anymail)",
             "__module__": __name__},
        ))
    return tuple(classes)
