"""Apple Push Notification service, HTTP/2 provider API with token-based authentication.

Implements Apple's "Sending notification requests to APNs" (``POST /3/device/{token}`` over
HTTP/2, ``apns-*`` headers), "Establishing a token-based connection to APNs" (an ES256 JWT
``{alg, kid}`` / ``{iss: team id, iat}`` signed with the team's .p8 key, reused for under an
hour) and "Handling notification responses from APNs" (``{"reason": ...}`` error bodies).

APNs speaks only HTTP/2, which ``requests`` cannot, so this backend uses an ``httpx`` client
with ``http1=False``: TLS with ALPN ``h2`` for ``https://``, HTTP/2 prior knowledge for an
``http://`` base (local test peers). One client, one connection, many concurrent streams per
batch. The JWT is shared by every worker process through :mod:`channels_app.tokens`: Apple
refuses tokens older than an hour and answers ``TooManyProviderTokenUpdates`` to a key that
signs new ones too often, so the fleet signs one token about every 50 minutes.
"""
import json
import re
import threading
import time
import uuid

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from django.conf import settings
from rest_framework import serializers

from channels_app.base import ChannelBackend
from channels_app.concurrency import ConcurrentSendMixin
from channels_app.errors import (
    AccountError,
    DeadAddressError,
    InvalidAddressError,
    PermanentChannelError,
    TransientChannelError,
)
from channels_app.http import blocked_url_error, retry_after_seconds
from channels_app.kinds import ChannelKind
from channels_app.message import OutboundMessage, SendResult
from channels_app.netguard import BlockedURLError, Resolver, check_outbound_url, parse_outbound_url
from channels_app.outbound import PinnedTransport
from channels_app.tokens import access_token, access_token_invalidate

ENVIRONMENTS = {
    "production": "https://api.push.apple.com",
    "sandbox": "https://api.sandbox.push.apple.com",
}
#: Apple accepts a provider token for one hour; the fleet signs a new one after 50 minutes.
JWT_LIFETIME_SECONDS = 3600
JWT_MARGIN_SECONDS = 600
TEAM_OR_KEY_RE = re.compile(r"^[A-Z0-9]{10}$")
BUNDLE_RE = re.compile(r"^[A-Za-z0-9.\-]+$")
DEVICE_TOKEN_RE = re.compile(r"^(?:[0-9a-f]{2}){32,100}$")
COLLAPSE_ID_MAX_BYTES = 64
#: One signer per process at a time: the cache lock in channels_app.tokens is atomic on Redis
#: but not on the embedded file cache, and the threads of a batch all ask at once.
_sign_lock = threading.Lock()

#: reason -> error class, from Apple's table of response error strings.
DEAD_REASONS = frozenset({"Unregistered", "ExpiredToken"})
#: The token is malformed, belongs to the other environment, or to another app of the team;
#: it may work for another account, so the contact point is not deactivated.
INVALID_ADDRESS_REASONS = frozenset({"BadDeviceToken", "DeviceTokenNotForTopic", "MissingDeviceToken"})
ACCOUNT_REASONS = frozenset({
    "InvalidProviderToken", "MissingProviderToken", "BadCertificate", "BadCertificateEnvironment",
    "Forbidden", "TopicDisallowed", "BadTopic", "MissingTopic", "UnrelatedKeyIdInToken",
    "BadEnvironmentKeyInToken",
})
TRANSIENT_REASONS = frozenset({
    "TooManyProviderTokenUpdates", "TooManyRequests", "InternalServerError", "ServiceUnavailable",
    "Shutdown", "IdleTimeout",
})


def load_private_key(text: str) -> ec.EllipticCurvePrivateKey:
    """The .p8 key as an EC P-256 key, or ``ValueError`` saying what is wrong with it."""
    try:
        key = load_pem_private_key(text.strip().replace("\\n", "\n").encode(), password=None)
    except (TypeError, ValueError):
        raise ValueError("Not a PEM private key: paste the whole .p8 file, BEGIN and END lines included.") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("Not an EC P-256 key: APNs auth keys (.p8) are P-256 keys.")
    return key


class ApnsOptions(serializers.Serializer):
    team_id = serializers.CharField(help_text="10-character Team ID (Apple Developer > Membership).")
    key_id = serializers.CharField(help_text="10-character Key ID of the APNs auth key.")
    private_key = serializers.CharField(help_text="Secret. Contents of the AuthKey_<key id>.p8 file.")
    bundle_id = serializers.CharField(help_text="The app's bundle id, sent as apns-topic.")
    environment = serializers.ChoiceField(
        choices=sorted(ENVIRONMENTS), default="production",
        help_text="production for App Store/TestFlight builds, sandbox for development builds.",
    )
    api_base = serializers.URLField(
        required=False, allow_blank=True, default="",
        help_text="Overrides the environment's APNs URL (tests, proxies).",
    )
    ttl = serializers.IntegerField(
        required=False, allow_null=True, default=None, min_value=0, max_value=30 * 24 * 3600,
        help_text="Seconds APNs keeps an undeliverable notification (apns-expiration); "
                  "0 = deliver now or never; blank = Apple's default.",
    )
    timeout = serializers.FloatField(default=10.0, min_value=0.1, max_value=60)

    def validate_team_id(self, value):
        if not TEAM_OR_KEY_RE.match(value):
            raise serializers.ValidationError("A Team ID is 10 upper-case letters and digits.")
        return value

    def validate_key_id(self, value):
        if not TEAM_OR_KEY_RE.match(value):
            raise serializers.ValidationError("A Key ID is 10 upper-case letters and digits.")
        return value

    def validate_private_key(self, value):
        try:
            load_private_key(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value

    def validate_bundle_id(self, value):
        if not BUNDLE_RE.match(value):
            raise serializers.ValidationError("Not a bundle id (letters, digits, '.' and '-').")
        return value

    def validate_api_base(self, value):
        if value:
            try:
                check_outbound_url(value, resolve=False)
            except BlockedURLError as exc:
                raise serializers.ValidationError(str(exc)) from None
        return value.rstrip("/")


def _apns_id(delivery_id: str) -> str:
    """Apple wants a canonical UUID; a delivery id that is not one maps to a stable UUID5."""
    try:
        return str(uuid.UUID(delivery_id)).upper()
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"notifyhub:delivery:{delivery_id}")).upper()


class _ProviderTokenExpired(TransientChannelError):
    """APNs found the JWT stale (403 ExpiredProviderToken): sign a new one and retry once."""


class ApnsBackend(ConcurrentSendMixin, ChannelBackend):
    kind = ChannelKind.PUSH
    name = "apns"
    label = "Apple Push Notification service (token auth)"
    Options = ApnsOptions
    secret_fields = frozenset({"private_key"})

    def __init__(self, *, resolver: Resolver | None = None, **kwargs):
        super().__init__(**kwargs)
        self.resolver = resolver  # how host names resolve; connections are pinned (see outbound)
        self.client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._key: ec.EllipticCurvePrivateKey | None = None

    @classmethod
    def validate_address(cls, address: str) -> str:
        """A device token as hex; spaces and the ``<...>`` of old ``description`` output removed."""
        token = re.sub(r"[\s<>]", "", address or "").lower()
        if not DEVICE_TOKEN_RE.match(token):
            raise InvalidAddressError(f"{address!r} is not an APNs device token (hex).", code="invalid_token")
        return token

    @property
    def api_base(self) -> str:
        return self.options.get("api_base") or ENVIRONMENTS[self.options.get("environment") or "production"]

    # --- connection ------------------------------------------------------------------------
    def open(self) -> None:
        with self._lock:
            if self.client is None:
                timeout = self.options.get("timeout") or settings.NOTIFYHUB_HTTP_TIMEOUT_SECONDS
                limits = httpx.Limits(max_connections=settings.NOTIFYHUB_HTTP_CONCURRENCY)
                self.client = httpx.Client(
                    transport=PinnedTransport(resolver=self.resolver, http1=False, http2=True, limits=limits),
                    timeout=timeout, follow_redirects=False, headers={"user-agent": "notifyhub"},
                )

    def close(self) -> None:
        with self._lock:
            if self.client is not None:
                self.client.close()
                self.client = None

    # --- provider token --------------------------------------------------------------------
    @property
    def token_name(self) -> str:
        return f"apns:{self.options['team_id']}:{self.options['key_id']}"

    def _sign_token(self) -> tuple[str, float]:
        if self._key is None:
            self._key = load_private_key(self.options["private_key"])
        token = jwt.encode(
            {"iss": self.options["team_id"], "iat": int(time.time())}, self._key, algorithm="ES256",
            headers={"kid": self.options["key_id"], "typ": None},
        )
        return token, JWT_LIFETIME_SECONDS

    def provider_token(self) -> str:
        with _sign_lock:
            return access_token(self.token_name, self._sign_token, margin=JWT_MARGIN_SECONDS)

    # --- sending ---------------------------------------------------------------------------
    def build_request(self, message: OutboundMessage) -> tuple[dict, bytes]:
        """The ``apns-*`` headers and the JSON payload for one notification."""
        content = message.content
        alert = {k: content[k] for k in ("title", "body") if content.get(k)}
        aps: dict = {"alert": alert} if alert else {}
        if content.get("badge") not in (None, ""):
            try:
                aps["badge"] = int(content["badge"])
            except (TypeError, ValueError):
                raise PermanentChannelError(f"Badge {content['badge']!r} is not a number.",
                                            code="invalid_content") from None
        if content.get("sound"):
            aps["sound"] = content["sound"]
        if aps:  # shows an alert, plays a sound or badges the icon
            push_type, priority = "alert", "10"
        else:  # wakes the app silently; Apple requires priority 5 for these
            aps["content-available"] = 1
            push_type, priority = "background", "5"
        if content.get("image"):
            aps["mutable-content"] = 1  # a notification service extension downloads the image
        data = content.get("data") or {}
        if not isinstance(data, dict):
            raise PermanentChannelError("The push content part 'data' must be an object.", code="invalid_content")
        payload = {k: v for k, v in data.items() if k != "aps"}
        for part in ("url", "image"):
            if content.get(part):
                payload.setdefault(part, content[part])
        payload["aps"] = aps

        headers = {
            "apns-topic": self.options["bundle_id"],
            "apns-push-type": push_type,
            "apns-priority": priority,
            "apns-id": _apns_id(message.delivery_id),
        }
        collapse_id = str(content.get("collapse_key") or "")
        if collapse_id:
            if len(collapse_id.encode()) > COLLAPSE_ID_MAX_BYTES:
                raise PermanentChannelError("collapse_key is longer than APNs' 64 bytes.", code="BadCollapseId")
            headers["apns-collapse-id"] = collapse_id
        ttl = self.options.get("ttl")
        if ttl is not None:
            headers["apns-expiration"] = str(int(time.time()) + ttl if ttl else 0)
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        return headers, body

    def send(self, message: OutboundMessage) -> SendResult:
        url = f"{self.api_base}/3/device/{self.validate_address(message.address)}"
        try:  # the syntax here; the addresses where the connection is opened
            parse_outbound_url(url)
        except BlockedURLError as exc:
            raise blocked_url_error(exc, url) from exc
        self.open()
        headers, body = self.build_request(message)
        token = self.provider_token()
        try:
            response = self._post(url, headers, body, token)
        except _ProviderTokenExpired:
            access_token_invalidate(self.token_name, token)
            response = self._post(url, headers, body, self.provider_token())
        apns_id = response.headers.get("apns-id", headers["apns-id"])
        return SendResult(provider_message_id=apns_id, detail=f"HTTP {response.status_code}")

    def _post(self, url: str, headers: dict, body: bytes, token: str) -> httpx.Response:
        try:
            response = self.client.post(url, content=body, headers={**headers, "authorization": f"bearer {token}"})
        except BlockedURLError as exc:
            raise blocked_url_error(exc, url) from exc
        except httpx.TimeoutException as exc:
            raise TransientChannelError(f"Timed out: {exc}", code="timeout") from exc
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            raise PermanentChannelError(f"Invalid URL: {exc}", code="invalid_url") from exc
        except httpx.TransportError as exc:
            raise TransientChannelError(f"Connection failed: {exc!r}", code="connection_error") from exc
        self.raise_for_status(response)
        return response

    def raise_for_status(self, response: httpx.Response) -> None:
        status = response.status_code
        if status == 200:
            return
        text = response.text
        try:
            reason = str(response.json().get("reason") or "")
        except (ValueError, AttributeError):
            reason = ""
        code = reason or f"HTTP_{status}"
        kwargs = {"code": code, "status": status, "response": text}
        if reason == "ExpiredProviderToken":
            raise _ProviderTokenExpired("Provider token expired", **kwargs)
        if reason in DEAD_REASONS or status == 410:
            raise DeadAddressError(f"Device token is no longer active: {code}", **kwargs)
        if reason in INVALID_ADDRESS_REASONS:
            raise InvalidAddressError(f"Device token refused: {reason}", **kwargs)
        if reason in ACCOUNT_REASONS or status == 403:
            raise AccountError(f"APNs refused the account: {code}", **kwargs)
        if reason in TRANSIENT_REASONS or status in (429, 500, 503) or status >= 500:
            raise TransientChannelError(
                f"APNs busy or failing: {code}", **kwargs,
                retry_after=retry_after_seconds(response.headers.get("retry-after")),
            )
        raise PermanentChannelError(f"APNs refused the notification: {code}", **kwargs)
