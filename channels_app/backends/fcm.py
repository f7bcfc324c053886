"""Firebase Cloud Messaging, HTTP v1 API.

Implements https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages/send:
``POST {api_base}/v1/projects/{project_id}/messages:send`` with an OAuth 2.0 access token of
a service account (scope ``firebase.messaging``), errors per
https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode.

The access token is obtained with google-auth from the service-account key (JWT-bearer grant
to the key's ``token_uri``) and shared by every worker process through
:mod:`channels_app.tokens`, so a fleet of workers fetches one token an hour, not one per
process; a token FCM refuses (401 ``UNAUTHENTICATED``) is dropped and fetched again once.
"""
import json
import re
import threading
from datetime import UTC, datetime

import google.auth.exceptions
import google.auth.transport.requests
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from django.conf import settings
from google.oauth2 import service_account
from rest_framework import serializers

from channels_app.errors import (
    AccountError,
    DeadAddressError,
    InvalidAddressError,
    PermanentChannelError,
    TransientChannelError,
)
from channels_app.http import HttpChannelBackend, retry_after_seconds
from channels_app.kinds import ChannelKind
from channels_app.message import OutboundMessage, SendResult
from channels_app.netguard import BlockedURLError, UnresolvableHostError, check_outbound_url
from channels_app.tokens import access_token, access_token_invalidate

SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
FCM_ERROR_TYPE = "type.googleapis.com/google.firebase.fcm.v1.FcmError"
BAD_REQUEST_TYPE = "type.googleapis.com/google.rpc.BadRequest"
#: Access tokens live an hour; refresh five minutes early so none is used at its last second.
TOKEN_MARGIN_SECONDS = 300
#: One fetch per process at a time: the cache lock in channels_app.tokens is atomic on Redis
#: but not on the embedded file cache, and the threads of a batch all ask at once.
_fetch_lock = threading.Lock()
TOKEN_RE = re.compile(r"^[A-Za-z0-9_:.\-]{20,4096}$")
PROJECT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._-]{0,99}$")


def _check_url(value: str) -> str:
    try:
        return check_outbound_url(value, resolve=False)
    except BlockedURLError as exc:
        raise serializers.ValidationError(str(exc)) from None


def parse_service_account(text: str) -> dict:
    """The key JSON as a dict, or ``ValueError`` saying what is wrong with it."""
    try:
        info = json.loads(text)
    except (TypeError, ValueError):
        raise ValueError("Not valid JSON: paste the whole key file downloaded from the Firebase console.") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ValueError('Not a service-account key ("type" must be "service_account").')
    missing = [name for name in ("client_email", "private_key", "token_uri") if not info.get(name)]
    if missing:
        raise ValueError(f"Missing {', '.join(missing)}.")
    try:
        key = load_pem_private_key(str(info["private_key"]).encode(), password=None)
    except (TypeError, ValueError):
        raise ValueError("private_key is not a PEM private key.") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("private_key is not an RSA key.")
    try:
        check_outbound_url(str(info["token_uri"]), resolve=False)
    except BlockedURLError as exc:
        raise ValueError(f"token_uri: {exc}") from None
    return info


class FcmOptions(serializers.Serializer):
    project_id = serializers.CharField(
        required=False, allow_blank=True, default="",
        help_text="Firebase project id; blank = the project_id of the service-account key.",
    )
    service_account_json = serializers.CharField(
        trim_whitespace=True,
        help_text="Secret. The service-account key JSON (Project settings > Service accounts > "
                  "Generate new private key).",
    )
    api_base = serializers.URLField(default="https://fcm.googleapis.com")
    timeout = serializers.FloatField(default=10.0, min_value=0.1, max_value=60)

    def validate_project_id(self, value):
        if value and not PROJECT_RE.match(value):
            raise serializers.ValidationError("Not a Firebase project id.")
        return value

    def validate_service_account_json(self, value):
        try:
            parse_service_account(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value

    def validate_api_base(self, value):
        return _check_url(value).rstrip("/")

    def validate(self, attrs):
        if not attrs.get("project_id"):
            project = json.loads(attrs["service_account_json"]).get("project_id") or ""
            if not PROJECT_RE.match(project):
                raise serializers.ValidationError(
                    {"project_id": "Required: the service-account key names no project_id."})
            attrs["project_id"] = project
        return attrs


class _TokenRequest(google.auth.transport.requests.Request):
    """google-auth's transport over our session, with our timeout instead of its 120 s."""

    def __init__(self, session: requests.Session, timeout: float):
        super().__init__(session)
        self.timeout = timeout

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs):
        return super().__call__(url, method=method, body=body, headers=headers,
                                timeout=timeout or self.timeout, **kwargs)


class _AccessTokenRejected(AccountError):
    """FCM refused the access token itself (401 UNAUTHENTICATED): fetch another and retry once."""


def _string_data(data) -> dict[str, str]:
    """FCM ``data`` takes string values only; anything else travels as JSON text."""
    if not data:
        return {}
    if not isinstance(data, dict):
        raise PermanentChannelError("The push content part 'data' must be an object.", code="invalid_content")
    return {str(k): v if isinstance(v, str) else json.dumps(v, ensure_ascii=False) for k, v in data.items()}


def _badge(value) -> int | None:
    if value in (None, ""):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise PermanentChannelError(f"Badge {value!r} is not a number.", code="invalid_content") from None


class FcmBackend(HttpChannelBackend):
    kind = ChannelKind.PUSH
    name = "fcm"
    label = "Firebase Cloud Messaging (HTTP v1)"
    Options = FcmOptions
    secret_fields = frozenset({"service_account_json"})
    default_rate = "600000/m"  # FCM's default per-project quota

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._service_account: dict | None = None

    @classmethod
    def validate_address(cls, address: str) -> str:
        token = (address or "").strip()
        if not TOKEN_RE.match(token):
            raise InvalidAddressError(f"{address!r} is not an FCM registration token.", code="invalid_token")
        return token

    # --- access token ----------------------------------------------------------------------
    @property
    def service_account(self) -> dict:
        if self._service_account is None:
            self._service_account = json.loads(self.options["service_account_json"])
        return self._service_account

    @property
    def token_name(self) -> str:
        return f"fcm:{self.options['project_id']}:{self.service_account['client_email']}"

    def _fetch_token(self) -> tuple[str, float]:
        """One JWT-bearer grant at the key's token endpoint: ``(access token, seconds left)``."""
        token_uri = self.service_account["token_uri"]
        try:
            check_outbound_url(token_uri)
        except UnresolvableHostError as exc:
            raise TransientChannelError(str(exc), code="dns_failure") from exc
        except BlockedURLError as exc:
            raise AccountError(f"token_uri: {exc}", code="blocked_url") from exc
        self.open()
        credentials = service_account.Credentials.from_service_account_info(self.service_account, scopes=[SCOPE])
        timeout = self.options.get("timeout") or settings.NOTIFYHUB_HTTP_TIMEOUT_SECONDS
        try:
            credentials.refresh(_TokenRequest(self.session, timeout))
        except google.auth.exceptions.TransportError as exc:
            raise TransientChannelError(f"Token endpoint unreachable: {exc}", code="token_unreachable") from exc
        except google.auth.exceptions.RefreshError as exc:
            if getattr(exc, "retryable", False):
                raise TransientChannelError(f"Token refresh failed: {exc}", code="token_refresh_failed") from exc
            raise AccountError(f"Token refresh refused: {exc}", code="token_refresh_refused") from exc
        lifetime = 3600.0
        if credentials.expiry is not None:
            lifetime = (credentials.expiry.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds()
        return credentials.token, lifetime

    def access_token(self) -> str:
        with _fetch_lock:
            return access_token(self.token_name, self._fetch_token, margin=TOKEN_MARGIN_SECONDS)

    # --- sending ---------------------------------------------------------------------------
    def build_message(self, message: OutboundMessage) -> dict:
        """The v1 ``Message`` for one registration token."""
        content = message.content
        notification = {k: content[k] for k in ("title", "body", "image") if content.get(k)}
        data = _string_data(content.get("data"))
        if content.get("url"):
            data.setdefault("url", content["url"])
        fcm_message: dict = {"token": message.address}
        if notification:
            fcm_message["notification"] = notification
        if data:
            fcm_message["data"] = data

        android: dict = {}
        android_notification: dict = {}
        aps: dict = {}
        apns: dict = {}
        if content.get("collapse_key"):
            android["collapse_key"] = content["collapse_key"]
            apns["headers"] = {"apns-collapse-id": content["collapse_key"]}
        if content.get("sound"):
            android_notification["sound"] = content["sound"]
            aps["sound"] = content["sound"]
        badge = _badge(content.get("badge"))
        if badge is not None:
            android_notification["notification_count"] = badge
            aps["badge"] = badge
        if content.get("image"):
            aps["mutable-content"] = 1  # lets the app's notification service extension show the image
            apns["fcm_options"] = {"image": content["image"]}
        if android_notification:
            android["notification"] = android_notification
        if aps:
            apns["payload"] = {"aps": aps}
        if android:
            fcm_message["android"] = android
        if apns:
            fcm_message["apns"] = apns
        if str(content.get("url") or "").startswith("https://"):
            fcm_message["webpush"] = {"fcm_options": {"link": content["url"]}}
        return {"message": fcm_message}

    def send(self, message: OutboundMessage) -> SendResult:
        url = f"{self.options['api_base']}/v1/projects/{self.options['project_id']}/messages:send"
        body = self.build_message(message)
        token = self.access_token()
        try:
            response = self.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
        except _AccessTokenRejected:
            access_token_invalidate(self.token_name, token)
            token = self.access_token()
            response = self.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
        try:
            name = str(response.json().get("name") or "")
        except (ValueError, AttributeError):
            name = ""
        return SendResult(provider_message_id=name, detail=f"HTTP {response.status_code}")

    def raise_for_status(self, response: requests.Response) -> None:
        """Map the ``google.rpc.Status`` error body, preferring the ``FcmError`` code."""
        status = response.status_code
        if 200 <= status < 300:
            return
        text = response.text
        try:
            error = response.json().get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        if not isinstance(error, dict):
            error = {}
        details = [d for d in error.get("details") or [] if isinstance(d, dict)]
        fcm_code = next((d.get("errorCode", "") for d in details if d.get("@type") == FCM_ERROR_TYPE), "")
        rpc_status = str(error.get("status") or "")
        code = fcm_code or rpc_status or f"HTTP_{status}"
        detail = str(error.get("message") or f"HTTP {status}")
        kwargs = {"code": code, "status": status, "response": text}
        retry_after = retry_after_seconds(response.headers.get("Retry-After"))

        if fcm_code == "UNREGISTERED":
            raise DeadAddressError(f"Registration token is no longer valid: {detail}", **kwargs)
        if fcm_code == "SENDER_ID_MISMATCH":
            # The token belongs to another Firebase project: usable by that project's account.
            raise InvalidAddressError(f"Token registered with another sender: {detail}", **kwargs)
        if code == "INVALID_ARGUMENT" or status == 400:
            if _is_token_violation(error, details):
                raise InvalidAddressError(f"Invalid registration token: {detail}", **kwargs)
            raise PermanentChannelError(f"Invalid message: {detail}", **kwargs)
        if fcm_code == "THIRD_PARTY_AUTH_ERROR":
            raise AccountError(f"APNs or Web Push credentials refused: {detail}", **kwargs)
        if status == 401 or rpc_status == "UNAUTHENTICATED":
            raise _AccessTokenRejected(f"Access token refused: {detail}", **kwargs)
        if status == 403 or rpc_status == "PERMISSION_DENIED":
            raise AccountError(f"Permission denied: {detail}", **kwargs)
        if fcm_code == "QUOTA_EXCEEDED" or status == 429:
            raise TransientChannelError(f"Quota exceeded: {detail}", retry_after=retry_after, **kwargs)
        if status >= 500 or status == 408:
            raise TransientChannelError(f"FCM unavailable: {detail}", retry_after=retry_after, **kwargs)
        if 300 <= status < 400:
            raise PermanentChannelError(
                f"HTTP {status} redirect to {response.headers.get('Location', '?')} not followed", **kwargs)
        raise PermanentChannelError(detail, **kwargs)


def _is_token_violation(error: dict, details: list[dict]) -> bool:
    """Whether a 400 is about the registration token rather than the message."""
    for detail in details:
        if detail.get("@type") == BAD_REQUEST_TYPE:
            for violation in detail.get("fieldViolations") or []:
                if isinstance(violation, dict) and violation.get("field") == "message.token":
                    return True
    return "registration token" in str(error.get("message") or "").lower()
