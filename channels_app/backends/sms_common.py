"""What the SMS backends (``twilio``, ``aliyun``, ``tencent``) share: phone numbers, option
checks and the plumbing of delivery-report callbacks.

Phone numbers are checked with ``phonenumbers`` (Google's libphonenumber metadata). notifyhub
stores SMS contact points in international E.164 form (``+8613800138000``), so an address
without its country code is refused rather than guessed.

Aliyun and Tencent push delivery reports without any signature, so those endpoints are
protected by a secret ``callback_token`` that the operator appends to the URL configured in the
provider's console (``?token=...``); see docs/channels/sms.md.
"""
import hmac
import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

import phonenumbers
from rest_framework import serializers

from channels_app.base import CallbackRejected, CallbackRequest
from channels_app.errors import AccountError, InvalidAddressError, PermanentChannelError
from channels_app.netguard import BlockedURLError, check_outbound_url

#: Aliyun and Tencent give report times as Beijing time without a zone.
CHINA_TIME = timezone(timedelta(hours=8), "Asia/Shanghai")
CALLBACK_TOKEN = re.compile(r"[A-Za-z0-9._~-]{16,128}")
DEFAULT_TIMEOUT = 10.0


# --- phone numbers ----------------------------------------------------------------------------
def parse_phone(address: str) -> phonenumbers.PhoneNumber:
    """The number in ``address``, or ``InvalidAddressError`` naming it."""
    text = (address or "").strip()
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        raise InvalidAddressError(
            f"{address!r} is not a phone number in international form (+<country code><number>).",
            code="invalid_phone_number",
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidAddressError(f"{address!r} is not a valid phone number.", code="invalid_phone_number")
    return number


def e164(address: str) -> str:
    """``address`` normalised to E.164 (``+8613800138000``)."""
    return phonenumbers.format_number(parse_phone(address), phonenumbers.PhoneNumberFormat.E164)


def phone_option(value: str) -> str:
    """Serializer check for a sender number option; blank stays blank."""
    if not value:
        return value
    try:
        return e164(value)
    except InvalidAddressError as exc:
        raise serializers.ValidationError(f"{exc} Use E.164, e.g. +14155550100.") from None


# --- options ----------------------------------------------------------------------------------
def url_option(value: str) -> str:
    """Serializer check for a base URL option: the outbound URL policy, without DNS."""
    try:
        check_outbound_url(value, resolve=False)
    except BlockedURLError as exc:
        raise serializers.ValidationError(str(exc)) from None
    return value.rstrip("/")


def callback_token_option(value: str) -> str:
    """A callback token goes into a query string and guards the endpoint: long and URL-safe."""
    value = (value or "").strip()
    if value and not CALLBACK_TOKEN.fullmatch(value):
        raise serializers.ValidationError(
            "Use 16 to 128 characters from A-Z a-z 0-9 . _ ~ - , e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'.")
    return value


def timeout_field() -> serializers.FloatField:
    return serializers.FloatField(default=DEFAULT_TIMEOUT, min_value=0.1, max_value=60,
                                  help_text="Seconds to wait for the provider's answer.")


# --- content ----------------------------------------------------------------------------------
def template_code(content: Mapping) -> str:
    """The provider template (Aliyun TemplateCode, Tencent TemplateId) the content names."""
    code = str(content.get("template_code") or "").strip()
    if not code:
        raise PermanentChannelError("The sms content has no template_code; this provider only sends templates.",
                                    code="no_template_code")
    return code


def sign_name_error(*, overridden: bool) -> type[PermanentChannelError]:
    """A refused SMS signature (签名) is the account's fault when it is the account's own
    ``sign_name``, so other accounts are tried; a template's override fails just that delivery."""
    return PermanentChannelError if overridden else AccountError


# --- callbacks --------------------------------------------------------------------------------
def header(request: CallbackRequest, name: str) -> str:
    """A request header by case-insensitive name ("" when absent)."""
    value = request.headers.get(name)
    if value is None:
        lowered = name.lower()
        value = next((v for k, v in request.headers.items() if k.lower() == lowered), None)
    return value or ""


def form_params(request: CallbackRequest) -> dict[str, str]:
    """The POSTed form fields, decoded from the raw body when the caller did not."""
    if request.form:
        return {str(k): "" if v is None else str(v) for k, v in request.form.items()}
    if request.body and "json" not in header(request, "Content-Type"):
        return dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    return {}


def query_param(request: CallbackRequest, name: str) -> str:
    if name in request.query:
        return str(request.query[name] or "")
    return dict(parse_qsl(urlsplit(request.url).query, keep_blank_values=True)).get(name, "")


def check_callback_token(request: CallbackRequest, expected: str) -> None:
    """Refuse a report whose ``token`` query parameter is not the account's callback token.
    Without a token the account takes no reports at all: the provider does not sign them, and an
    unauthenticated "failed" report could otherwise trigger paid fallback sends."""
    if not expected:
        raise CallbackRejected("this account has no callback_token: set one to receive reports")
    given = query_param(request, "token")
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise CallbackRejected("missing or wrong callback token")


def json_body(request: CallbackRequest) -> list:
    """The JSON array of reports in the body (a single object is taken as a list of one)."""
    try:
        data = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CallbackRejected("the body is not JSON") from None
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise CallbackRejected("the body is not a JSON array of reports")
    return [item for item in data if isinstance(item, dict)]


def china_time(text) -> datetime | None:
    """``"2017-01-01 00:00:00"`` (Beijing time) as an aware datetime; None when unreadable."""
    try:
        return datetime.strptime(str(text).strip(), "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA_TIME)
    except ValueError:
        return None


def alnum_credential(value: str, message: str) -> str:
    """An access key id or secret: ASCII letters and digits only (a pasted space or quote is the
    usual mistake, caught here rather than as a signature error at send time)."""
    value = value.strip()
    if not value.isascii() or not value.isalnum():
        raise serializers.ValidationError(message)
    return value
