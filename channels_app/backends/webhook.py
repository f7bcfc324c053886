"""Webhooks signed per the Standard Webhooks specification (standardwebhooks.com).

The body is ``{"type", "timestamp", "data"}``; the headers ``webhook-id`` (stable across
retries, so a receiver can drop a repeat), ``webhook-timestamp`` and ``webhook-signature``
(``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` keyed with the ``whsec_`` secret).
"""
import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime

from rest_framework import serializers

from channels_app.errors import InvalidAddressError, PermanentChannelError
from channels_app.http import HttpChannelBackend
from channels_app.kinds import ChannelKind
from channels_app.message import OutboundMessage, SendResult
from channels_app.netguard import BlockedURLError, check_outbound_url

SECRET_PREFIX = "whsec_"  # noqa: S105 — a prefix, not a secret


def generate_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_bytes(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def _check_url(value: str) -> str:
    if value:
        try:
            check_outbound_url(value, resolve=False)
        except BlockedURLError as exc:
            raise serializers.ValidationError(str(exc)) from None
    return value


class WebhookOptions(serializers.Serializer):
    url = serializers.URLField(
        required=False, allow_blank=True, default="",
        help_text="Endpoint used when the recipient has no webhook URL of their own.",
    )
    signing_secret = serializers.CharField(help_text="Secret. whsec_ followed by base64 (24 to 64 bytes).")
    timeout = serializers.FloatField(default=10.0, min_value=0.1, max_value=60)

    def validate_url(self, value):
        return _check_url(value)

    def validate_signing_secret(self, value):
        if not value.startswith(SECRET_PREFIX):
            raise serializers.ValidationError("Must start with whsec_.")
        try:
            key = secret_bytes(value)
        except (binascii.Error, ValueError):
            raise serializers.ValidationError("The part after whsec_ must be base64.") from None
        if not 24 <= len(key) <= 64:
            raise serializers.ValidationError("The key must be 24 to 64 bytes long.")
        return value


class WebhookBackend(HttpChannelBackend):
    kind = ChannelKind.WEBHOOK
    name = "webhook"
    label = "Webhook (Standard Webhooks)"
    Options = WebhookOptions
    secret_fields = frozenset({"signing_secret"})

    @classmethod
    def validate_address(cls, address: str) -> str:
        try:
            return _check_url(serializers.URLField().run_validation(address))
        except serializers.ValidationError as exc:
            raise InvalidAddressError(f"{address!r}: {exc.detail[0]}", code="invalid_url") from None

    def send(self, message: OutboundMessage) -> SendResult:
        url = message.address or self.options.get("url")
        if not url:
            raise PermanentChannelError("No webhook URL: neither the recipient nor the account has one.",
                                        code="no_url")
        webhook_id = f"msg_{message.delivery_id}"
        timestamp = int(time.time())
        body = json.dumps(
            {
                "type": message.metadata.get("template", "notification"),
                "timestamp": datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z"),
                "data": message.content.get("payload", {}),
            },
            separators=(",", ":"), ensure_ascii=False,
        ).encode()
        response = self.post(url, data=body, headers={
            "Content-Type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self.options["signing_secret"], webhook_id, timestamp, body),
        })
        return SendResult(provider_message_id=webhook_id, detail=f"HTTP {response.status_code}")
