"""Web Push: RFC 8030 (protocol), RFC 8291 (aes128gcm message encryption), RFC 8292 (VAPID).

The address is the browser's ``PushSubscription`` as JSON
(``{"endpoint": ..., "keys": {"p256dh": ..., "auth": ...}}``). The payload is encrypted and the
VAPID ``Authorization: vapid t=<JWT>, k=<public key>`` header signed by pywebpush/py-vapid;
this module adds what they leave to the caller: key validation at configuration time, the
outbound URL policy for the endpoint (the browser chose it, not the operator), no redirects,
and the mapping of push-service answers to channel errors.
"""
import base64
import binascii
import hashlib
import json
import re

import requests
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_private_key, load_pem_private_key
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import EmailValidator, URLValidator
from py_vapid import Vapid02, VapidException
from rest_framework import serializers

from channels_app.errors import (
    AccountError,
    DeadAddressError,
    InvalidAddressError,
    PermanentChannelError,
    TransientChannelError,
)
from channels_app.http import INVALID_URL_ERRORS, HttpChannelBackend, retry_after_seconds
from channels_app.kinds import ChannelKind
from channels_app.message import OutboundMessage, SendResult
from channels_app.netguard import BlockedURLError, UnresolvableHostError, check_outbound_url, parse_outbound_url

URGENCIES = ("very-low", "low", "normal", "high")
#: 4096 bytes of record (RFC 8030 minimum a push service must accept) minus the aes128gcm
#: header (86), the AEAD tag (16) and the padding delimiter (1).
MAX_PLAINTEXT_BYTES = 4096 - 86 - 16 - 1
TOPIC_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


def b64url_decode(value: str) -> bytes:
    value = value.strip()
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def load_vapid_key(text: str) -> ec.EllipticCurvePrivateKey:
    """The VAPID private key from PEM, base64url DER, or the base64url raw 32-byte scalar
    that ``web-push generate-vapid-keys`` and most libraries print; ``ValueError`` if none."""
    text = text.strip()
    key = None
    try:
        if text.startswith("-----BEGIN"):
            key = load_pem_private_key(text.replace("\\n", "\n").encode(), password=None)
        else:
            raw = b64url_decode(text)
            if len(raw) == 32:
                key = ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
            else:
                key = load_der_private_key(raw, password=None)
    except (TypeError, ValueError, binascii.Error):
        pass
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("Not a P-256 private key in PEM, base64url DER or base64url raw form.")
    return key


def parse_subscription(address: str) -> dict:
    """The subscription as ``{"endpoint", "keys": {"p256dh", "auth"}}`` or ``ValueError``."""
    try:
        data = json.loads(address)
    except (TypeError, ValueError):
        raise ValueError("not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("keys"), dict):
        raise ValueError('expected {"endpoint": ..., "keys": {"p256dh": ..., "auth": ...}}')
    endpoint, keys = data.get("endpoint"), data["keys"]
    if not isinstance(endpoint, str):
        raise ValueError("no endpoint")
    try:
        URLValidator(schemes=["http", "https"])(endpoint)
    except DjangoValidationError:
        raise ValueError("endpoint is not an http(s) URL") from None
    p256dh, auth = keys.get("p256dh"), keys.get("auth")
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b64url_decode(p256dh))
    except (TypeError, ValueError, AttributeError, binascii.Error):
        raise ValueError("keys.p256dh is not a base64url P-256 public key") from None
    try:
        if len(b64url_decode(auth)) != 16:
            raise ValueError
    except (TypeError, ValueError, AttributeError, binascii.Error):
        raise ValueError("keys.auth is not a base64url 16-byte secret") from None
    return {"endpoint": endpoint, "keys": {"p256dh": p256dh.strip(), "auth": auth.strip()}}


def topic(collapse_key: str) -> str:
    """RFC 8030 ``Topic``: at most 32 base64url characters; longer keys are hashed to fit."""
    if TOPIC_RE.match(collapse_key):
        return collapse_key
    return b64url_encode(hashlib.sha256(collapse_key.encode()).digest())[:32]


class WebPushOptions(serializers.Serializer):
    vapid_private_key = serializers.CharField(
        help_text="Secret. The VAPID private key: PEM (vapid --gen) or base64url (web-push generate-vapid-keys).",
    )
    vapid_subject = serializers.CharField(
        help_text="Contact for push services: mailto:ops@example.com or an https:// URL.",
    )
    ttl = serializers.IntegerField(
        default=86400, min_value=0, max_value=28 * 24 * 3600,
        help_text="Seconds the push service keeps a message for an offline browser (TTL).",
    )
    urgency = serializers.ChoiceField(choices=URGENCIES, default="normal")
    timeout = serializers.FloatField(default=10.0, min_value=0.1, max_value=60)

    def validate_vapid_private_key(self, value):
        try:
            load_vapid_key(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value

    def validate_vapid_subject(self, value):
        value = value.strip()
        try:
            if value.startswith("mailto:"):
                EmailValidator()(value.removeprefix("mailto:"))
            else:
                URLValidator(schemes=["https"])(value)
        except DjangoValidationError:
            raise serializers.ValidationError("Must be mailto:<e-mail address> or an https:// URL.") from None
        return value


class _NoRedirects:
    """What pywebpush calls as its session, with redirects never followed (a redirect could
    lead a request past the outbound URL policy)."""

    def __init__(self, session: requests.Session):
        self.session = session

    def post(self, url, **kwargs):
        return self.session.post(url, allow_redirects=False, **kwargs)


class WebPushBackend(HttpChannelBackend):
    kind = ChannelKind.PUSH
    name = "webpush"
    label = "Web Push (VAPID)"
    Options = WebPushOptions
    secret_fields = frozenset({"vapid_private_key"})

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._vapid: Vapid02 | None = None

    @classmethod
    def validate_address(cls, address: str) -> str:
        try:
            subscription = parse_subscription(address)
        except ValueError as exc:
            raise InvalidAddressError(f"Not a Web Push subscription: {exc}.", code="invalid_subscription") from None
        try:
            check_outbound_url(subscription["endpoint"], resolve=False)
        except BlockedURLError as exc:
            raise InvalidAddressError(str(exc), code="blocked_url") from None
        return json.dumps(subscription, separators=(",", ":"))

    @property
    def vapid(self) -> Vapid02:
        if self._vapid is None:
            # no-strict: RFC 8292 allows any https: subject; py-vapid's own check allows no path.
            self._vapid = Vapid02(private_key=load_vapid_key(self.options["vapid_private_key"]),
                                  conf={"no-strict": True})
        return self._vapid

    def build_payload(self, message: OutboundMessage) -> bytes:
        """What the service worker reads with ``event.data.json()``."""
        content = message.content
        payload = {"title": content.get("title") or "", "body": content.get("body") or ""}
        for part in ("url", "image", "data"):
            if content.get(part):
                payload[part] = content[part]
        if content.get("collapse_key"):
            payload["tag"] = content["collapse_key"]
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        if len(body) > MAX_PLAINTEXT_BYTES:
            raise PermanentChannelError(
                f"Payload is {len(body)} bytes; Web Push carries at most {MAX_PLAINTEXT_BYTES}.",
                code="payload_too_large",
            )
        return body

    def send(self, message: OutboundMessage) -> SendResult:
        try:
            subscription = parse_subscription(message.address)
        except ValueError as exc:
            raise InvalidAddressError(f"Not a Web Push subscription: {exc}.", code="invalid_subscription") from None
        try:  # the syntax here; the addresses where the connection is opened (outbound.py)
            parse_outbound_url(subscription["endpoint"])
        except BlockedURLError as exc:
            raise InvalidAddressError(str(exc), code="blocked_url") from exc
        headers = {"Urgency": self.options.get("urgency") or "normal"}
        if message.content.get("collapse_key"):
            headers["Topic"] = topic(str(message.content["collapse_key"]))
        payload = self.build_payload(message)
        # Imported here: pywebpush pulls in aiohttp, a third of a second at every process
        # start, and the registry imports every backend module.
        from pywebpush import WebPushException, webpush

        self.open()
        try:
            response = webpush(
                subscription, data=payload.decode(), vapid_private_key=self.vapid,
                vapid_claims={"sub": self.options["vapid_subject"]},
                ttl=self.options.get("ttl", 86400), headers=headers, content_encoding="aes128gcm",
                timeout=self.options.get("timeout") or 10.0, requests_session=_NoRedirects(self.session),
            )
        except WebPushException as exc:
            if exc.response is None:  # raised before sending: the subscription's keys
                raise InvalidAddressError(f"Unusable subscription: {exc.message}", code="invalid_subscription") from exc
            response = exc.response
        except UnresolvableHostError as exc:
            raise TransientChannelError(str(exc), code="dns_failure") from exc
        except BlockedURLError as exc:
            raise InvalidAddressError(str(exc), code="blocked_url") from exc
        except VapidException as exc:
            raise AccountError(f"VAPID signing failed: {exc}", code="vapid_error") from exc
        except requests.Timeout as exc:
            raise TransientChannelError(f"Timed out: {exc}", code="timeout") from exc
        except requests.ConnectionError as exc:
            raise TransientChannelError(f"Connection failed: {exc}", code="connection_error") from exc
        except INVALID_URL_ERRORS as exc:
            raise InvalidAddressError(f"Invalid endpoint URL: {exc}", code="invalid_url") from exc
        except requests.RequestException as exc:
            raise TransientChannelError(f"Request failed: {exc}", code="request_error") from exc
        self.raise_for_status(response)
        return SendResult(provider_message_id=response.headers.get("Location", ""),
                          detail=f"HTTP {response.status_code}")

    def raise_for_status(self, response: requests.Response) -> None:
        """RFC 8030 and the push services' documented answers."""
        status = response.status_code
        kwargs = {"status": status, "response": response.text}
        if status in (404, 410):
            raise DeadAddressError(f"Subscription expired or unsubscribed (HTTP {status})",
                                   code="subscription_gone", **kwargs)
        if status == 413:
            raise PermanentChannelError("Payload too large (HTTP 413)", code="payload_too_large", **kwargs)
        if status == 401:
            raise AccountError("Push service refused the VAPID authorization (HTTP 401)",
                               code="vapid_unauthorized", **kwargs)
        if status == 403:
            # RFC 8292 4.2: the subscription was created with another application server key.
            raise InvalidAddressError("Subscription belongs to another VAPID key (HTTP 403)",
                                      code="vapid_key_mismatch", **kwargs)
        if status == 429:
            raise TransientChannelError("Too many requests (HTTP 429)", code="rate_limited", **kwargs,
                                        retry_after=retry_after_seconds(response.headers.get("Retry-After")))
        super().raise_for_status(response)
