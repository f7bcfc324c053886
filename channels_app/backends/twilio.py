"""Twilio Programmable Messaging: SMS through the Messages resource, with status callbacks.

Implements, from twilio.com/docs: the *Messages resource* (``POST /2010-04-01/Accounts/
{AccountSid}/Messages.json``, form-encoded ``To``, ``From`` or ``MessagingServiceSid``,
``Body``, ``StatusCallback``; HTTP Basic auth with the Account SID and Auth Token), the REST
API's JSON error body (``code``, ``message``, ``more_info``, ``status``) and *Webhooks
security* (``X-Twilio-Signature`` = base64 HMAC-SHA1, keyed with the Auth Token, of the full
URL followed by every POST parameter's name and value, sorted by name).

A small client rather than the twilio SDK: one form POST does not need it, and the shared
session gives timeouts, connection reuse and the outbound URL check for free.
"""
import base64
import hashlib
import hmac
import re
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit, urlunsplit

import requests
from rest_framework import serializers

from channels_app.backends.sms_common import (
    e164,
    form_params,
    header,
    phone_option,
    timeout_field,
    url_option,
)
from channels_app.base import CallbackRejected, CallbackRequest, Receipt
from channels_app.errors import (
    AccountError,
    ChannelError,
    DeadAddressError,
    InvalidAddressError,
    PermanentChannelError,
    TransientChannelError,
)
from channels_app.http import TRANSIENT_STATUSES, HttpChannelBackend, retry_after_seconds
from channels_app.kinds import ChannelKind
from channels_app.message import OutboundMessage, SendResult

DEFAULT_API_BASE = "https://api.twilio.com"
ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
MESSAGING_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
#: Twilio refuses a longer Body (error 21617).
MAX_BODY = 1600

#: Twilio error code -> what it means for the delivery (codes not listed go by HTTP status).
ERRORS: dict[int, type[ChannelError]] = {
    # the account cannot send
    20003: AccountError,           # Authenticate: wrong Account SID or Auth Token
    20005: AccountError,           # account not active
    20008: AccountError,           # test credentials cannot send
    21212: AccountError,           # invalid From number
    21603: AccountError,           # From is required
    21606: AccountError,           # From is not an SMS-capable number of this account
    21701: AccountError,           # Messaging Service does not exist
    21703: AccountError,           # Messaging Service has no sender
    21704: AccountError,           # Messaging Service contains an invalid sender
    30002: AccountError,           # account suspended
    30034: AccountError,           # US A2P 10DLC: sender not registered
    # the recipient's number
    21211: InvalidAddressError,    # invalid To number
    21604: InvalidAddressError,    # To is required
    21614: InvalidAddressError,    # To is not a mobile number
    21635: InvalidAddressError,    # To cannot be a landline
    30006: InvalidAddressError,    # landline or unreachable carrier
    30005: DeadAddressError,       # unknown destination handset: the number no longer exists
    # this message can never go out as it is
    21408: PermanentChannelError,  # no permission to send to the To number's region
    21602: PermanentChannelError,  # Body is required
    21608: PermanentChannelError,  # trial account: To is not a verified number
    21610: PermanentChannelError,  # recipient replied STOP (reversible with START, so not "dead")
    21612: PermanentChannelError,  # To is not reachable from this sender
    21617: PermanentChannelError,  # Body exceeds 1600 characters
    30004: PermanentChannelError,  # message blocked
    30007: PermanentChannelError,  # filtered by the carrier
    # try again later
    20429: TransientChannelError,  # too many requests
    21611: TransientChannelError,  # the sender's queue is full
    30001: TransientChannelError,  # queue overflow
    30003: TransientChannelError,  # handset unreachable (switched off)
    30008: TransientChannelError,  # unknown error
}

#: Delivery errors a status callback's ErrorCode may carry, spelled out in the receipt detail.
DELIVERY_ERRORS = {
    "30001": "queue overflow", "30002": "account suspended", "30003": "unreachable destination handset",
    "30004": "message blocked", "30005": "unknown destination handset", "30006": "landline or unreachable carrier",
    "30007": "filtered by the carrier", "30008": "unknown error", "30009": "missing segment",
    "30010": "message price exceeds max price", "30034": "sender not A2P 10DLC registered",
}


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """``X-Twilio-Signature`` for a request to ``url`` with POST ``params``."""
    signed = url + "".join(name + params[name] for name in sorted(params))
    digest = hmac.new(auth_token.encode(), signed.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def _url_variants(url: str) -> Iterator[str]:
    """The URL as given and with its default port added or removed: Twilio's own helpers
    accept either, since proxies differ in what they pass on."""
    yield url
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        return
    if default and port is None:
        yield urlunsplit(parts._replace(netloc=f"{parts.netloc}:{default}"))
    elif default and port == default:
        yield urlunsplit(parts._replace(netloc=parts.netloc.rsplit(":", 1)[0]))


class TwilioOptions(serializers.Serializer):
    account_sid = serializers.CharField(help_text="Account SID: AC followed by 32 hex characters.")
    auth_token = serializers.CharField(help_text="Secret. The account's Auth Token; it also signs status callbacks.")
    from_number = serializers.CharField(
        required=False, allow_blank=True, default="",
        help_text="Sender: a Twilio phone number in E.164, e.g. +14155550100. Set this or messaging_service_sid.")
    messaging_service_sid = serializers.CharField(
        required=False, allow_blank=True, default="",
        help_text="Sender: a Messaging Service SID (MG followed by 32 hex characters). Set this or from_number.")
    api_base = serializers.URLField(default=DEFAULT_API_BASE, help_text="Twilio REST API base URL.")
    timeout = timeout_field()

    def validate_account_sid(self, value):
        value = value.strip()
        if not ACCOUNT_SID.fullmatch(value):
            raise serializers.ValidationError("An Account SID is AC followed by 32 hex characters.")
        return value

    def validate_from_number(self, value):
        return phone_option(value.strip())

    def validate_messaging_service_sid(self, value):
        value = value.strip()
        if value and not MESSAGING_SERVICE_SID.fullmatch(value):
            raise serializers.ValidationError("A Messaging Service SID is MG followed by 32 hex characters.")
        return value

    def validate_api_base(self, value):
        return url_option(value)

    def validate(self, attrs):
        has_from, has_service = bool(attrs.get("from_number")), bool(attrs.get("messaging_service_sid"))
        if not has_from and not has_service:
            raise serializers.ValidationError({"from_number": "Set from_number or messaging_service_sid."})
        if has_from and has_service:
            raise serializers.ValidationError(
                {"messaging_service_sid": "Set either from_number or messaging_service_sid, not both."})
        return attrs


class TwilioBackend(HttpChannelBackend):
    kind = ChannelKind.SMS
    name = "twilio"
    label = "Twilio SMS"
    Options = TwilioOptions
    secret_fields = frozenset({"auth_token"})
    #: A long-code number sends one segment per second; short codes and services go faster
    #: (raise the account's rate limit accordingly).
    default_rate = "1/s"

    @property
    def reports_delivery(self) -> bool:
        """Twilio reports only when it is given a StatusCallback (NOTIFYHUB_PUBLIC_URL set)."""
        return bool(self.callback_url)

    @classmethod
    def validate_address(cls, address: str) -> str:
        return e164(address)

    def send(self, message: OutboundMessage) -> SendResult:
        text = str(message.content.get("text") or "")
        if not text.strip():
            raise PermanentChannelError("The sms content has no text.", code="no_text")
        if len(text) > MAX_BODY:
            raise PermanentChannelError(f"The text has {len(text)} characters; Twilio takes at most {MAX_BODY}.",
                                        code="text_too_long")
        data = {"To": self.validate_address(message.address), "Body": text}
        if self.options.get("messaging_service_sid"):
            data["MessagingServiceSid"] = self.options["messaging_service_sid"]
        else:
            data["From"] = self.options["from_number"]
        if self.callback_url:
            data["StatusCallback"] = self.callback_url
        account_sid = self.options["account_sid"]
        url = f"{self.options.get('api_base') or DEFAULT_API_BASE}/2010-04-01/Accounts/{account_sid}/Messages.json"
        response = self.post(url, data=data, auth=(account_sid, self.options["auth_token"]),
                             headers={"Accept": "application/json"})
        body = _json(response)
        sid = body.get("sid")
        if not sid:  # accepted but unreadable: do not retry, it may have gone out
            raise PermanentChannelError("Twilio answered without a message sid.", code="bad_response",
                                        status=response.status_code, response=response.text)
        return SendResult(provider_message_id=str(sid), detail=f"status={body.get('status', '')}")

    def raise_for_status(self, response: requests.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        body = _json(response)
        code = body.get("code")
        if not isinstance(code, int):
            if status == 401:
                raise AccountError("Twilio refused the credentials.", code="20003", status=status,
                                   response=response.text)
            super().raise_for_status(response)
            return
        text = f"Twilio error {code}: {body.get('message', '')}".strip()
        if body.get("more_info"):
            text += f" ({body['more_info']})"
        error = ERRORS.get(code)
        if error is None:
            if status in TRANSIENT_STATUSES or status >= 500:
                error = TransientChannelError
            elif status in (401, 403):
                error = AccountError
            else:
                error = PermanentChannelError
        kwargs = {"code": str(code), "status": status, "response": response.text}
        if issubclass(error, TransientChannelError):
            kwargs["retry_after"] = retry_after_seconds(response.headers.get("Retry-After"))
        raise error(text, **kwargs)

    # --- status callbacks ---------------------------------------------------------------------
    def receipts(self, request: CallbackRequest) -> list[Receipt]:
        params = form_params(request) if request.method.upper() == "POST" else {}
        self._verify(request, params)
        sid = params.get("MessageSid") or params.get("SmsSid") or ""
        status = params.get("MessageStatus") or params.get("SmsStatus") or ""
        if not sid or not status:
            return []
        event_id = f"{sid}:{status}"
        if status == "delivered":
            return [Receipt(provider_message_id=sid, status="delivered", event_id=event_id)]
        if status in ("undelivered", "failed"):
            code = params.get("ErrorCode", "")
            detail = status
            if code:
                detail += f": ErrorCode {code}"
                if code in DELIVERY_ERRORS:
                    detail += f" ({DELIVERY_ERRORS[code]})"
            return [Receipt(provider_message_id=sid, status="failed", event_id=event_id, detail=detail)]
        if status == "read":  # WhatsApp/RCS read receipts
            return [Receipt(provider_message_id=sid, status="opened", event_id=event_id)]
        return []  # accepted, queued, sending, sent...: progress the hub already knows

    def _verify(self, request: CallbackRequest, params: Mapping[str, str]) -> None:
        signature = header(request, "X-Twilio-Signature")
        if not signature:
            raise CallbackRejected("missing X-Twilio-Signature")
        token = self.options.get("auth_token") or ""
        urls = [request.url] + ([self.callback_url] if self.callback_url else [])
        for url in urls:
            for variant in _url_variants(url):
                if hmac.compare_digest(twilio_signature(token, variant, params).encode(), signature.encode()):
                    return
        raise CallbackRejected("X-Twilio-Signature does not match")


def _json(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
