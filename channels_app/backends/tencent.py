"""Tencent Cloud SMS (腾讯云短信): template messages with delivery status callbacks.

Implements, from cloud.tencent.com/document: *SendSms* (API 3.0, version 2021-01-11: ``POST /``
with ``X-TC-Action``/``X-TC-Version``/``X-TC-Timestamp``/``X-TC-Region`` headers and a JSON
body), the *TC3-HMAC-SHA256* signature (canonical request, string to sign, key derived as
``TC3 + SecretKey`` → date → ``sms`` → ``tc3_request``), the answer (``Response.SendStatusSet``
per number, or ``Response.Error`` for the request) with the SMS error codes, and the
*短信下发状态通知* callback (a JSON array of reports, acknowledged with
``{"result": 0, "errmsg": "OK"}``).

A small client rather than tencentcloud-sdk-python: one signed POST does not need it, and the
shared session gives timeouts, connection reuse and the outbound URL check.
"""
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import urlsplit

import requests
from rest_framework import serializers

from channels_app.backends.sms_common import (
    alnum_credential,
    callback_token_option,
    check_callback_token,
    china_time,
    e164,
    json_body,
    sign_name_error,
    template_code,
    timeout_field,
    url_option,
)
from channels_app.base import CallbackRequest, Receipt
from channels_app.errors import (
    AccountError,
    ChannelError,
    InvalidAddressError,
    PermanentChannelError,
    TransientChannelError,
)
from channels_app.http import HttpChannelBackend
from channels_app.kinds import ChannelKind
from channels_app.message import OutboundMessage, SendResult

DEFAULT_ENDPOINT = "https://sms.tencentcloudapi.com"
SERVICE = "sms"
API_VERSION = "2021-01-11"
CONTENT_TYPE = "application/json; charset=utf-8"
SIGNED_HEADERS = "content-type;host"

ACCOUNT_ERRORS = frozenset({
    "FailedOperation.InsufficientBalanceInSmsPackage", "InvalidParameterValue.SdkAppIdNotExist",
    "InvalidParameter.AppidAndBizId", "IpNotInWhitelist", "IpInBlacklist",
})
SIGN_ERRORS = frozenset({"FailedOperation.SignatureIncorrectOrUnapproved", "FailedOperation.MissingSignatureList"})
ADDRESS_ERRORS = frozenset({"InvalidParameterValue.IncorrectPhoneNumber", "FailedOperation.PhoneNumberParseFail"})
TRANSIENT_ERRORS = frozenset({
    "LimitExceeded.PhoneNumberDailyLimit", "LimitExceeded.PhoneNumberOneHourLimit",
    "LimitExceeded.PhoneNumberThirtySecondLimit", "LimitExceeded.PhoneNumberSameContentDailyLimit",
    "LimitExceeded.DeliveryFrequencyLimit", "LimitExceeded.AppDailyLimit", "LimitExceeded.DailyLimit",
    "FailedOperation.MarketingSendTimeConstraint", "AuthFailure.SignatureExpire",
    "InternalError.RequestTimeException",
})
#: Window to wait before the per-number limit lets the next message through.
RETRY_AFTER = {"LimitExceeded.PhoneNumberThirtySecondLimit": 30.0, "LimitExceeded.PhoneNumberOneHourLimit": 3600.0}
#: Whole classes of codes, for codes the lists above do not name.
PREFIXES: tuple[tuple[str, type[ChannelError]], ...] = (
    ("AuthFailure", AccountError),
    ("UnauthorizedOperation", AccountError),
    ("RequestLimitExceeded", TransientChannelError),
    ("LimitExceeded.", TransientChannelError),
    ("InternalError", TransientChannelError),
    ("ResourceUnavailable", TransientChannelError),
)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def tc3_authorization(*, secret_id: str, secret_key: str, host: str, timestamp: int, payload: bytes) -> str:
    """The ``Authorization`` header for ``POST /`` of ``payload`` to ``host`` at ``timestamp``."""
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    canonical_request = "\n".join([
        "POST", "/", "",
        f"content-type:{CONTENT_TYPE}\nhost:{host.lower()}\n",
        SIGNED_HEADERS,
        hashlib.sha256(payload).hexdigest(),
    ])
    scope = f"{date}/{SERVICE}/tc3_request"
    string_to_sign = "\n".join([
        "TC3-HMAC-SHA256", str(timestamp), scope, hashlib.sha256(canonical_request.encode()).hexdigest(),
    ])
    key = _hmac(_hmac(_hmac(f"TC3{secret_key}".encode(), date), SERVICE), "tc3_request")
    signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
    return f"TC3-HMAC-SHA256 Credential={secret_id}/{scope}, SignedHeaders={SIGNED_HEADERS}, Signature={signature}"


def tencent_error(code: str, message: str, *, status: int, response: str,
                  sign_overridden: bool = False) -> ChannelError:
    text = f"Tencent {code}: {message}".strip()
    kwargs = {"code": code, "status": status, "response": response}
    if code in ACCOUNT_ERRORS:
        return AccountError(text, **kwargs)
    if code in SIGN_ERRORS:
        return sign_name_error(overridden=sign_overridden)(text, **kwargs)
    if code in ADDRESS_ERRORS:
        return InvalidAddressError(text, **kwargs)
    if code in TRANSIENT_ERRORS:
        return TransientChannelError(text, retry_after=RETRY_AFTER.get(code), **kwargs)
    for prefix, error in PREFIXES:
        if code.startswith(prefix):
            return error(text, **kwargs)
    if status >= 500:
        return TransientChannelError(text, **kwargs)
    return PermanentChannelError(text, **kwargs)


class TencentOptions(serializers.Serializer):
    secret_id = serializers.CharField(help_text="SecretId of a CAM API key allowed to send SMS (AKID...).")
    secret_key = serializers.CharField(help_text="Secret. The SecretKey.")
    sms_sdk_app_id = serializers.RegexField(r"^\d{6,}$",
                                            help_text="SmsSdkAppId of the SMS application, e.g. 1400006666.")
    sign_name = serializers.CharField(
        required=False, allow_blank=True, default="",
        help_text="Approved SMS signature (签名); required for mainland China numbers.")
    region = serializers.RegexField(r"^[a-z]{2,}(-[a-z0-9]+)+$", default="ap-guangzhou",
                                    help_text="X-TC-Region, e.g. ap-guangzhou, ap-beijing, ap-nanjing.")
    endpoint = serializers.URLField(default=DEFAULT_ENDPOINT, help_text="Tencent Cloud API endpoint.")
    callback_token = serializers.CharField(
        required=False, allow_blank=True, default="",
        help_text="Secret. Token the status callback must carry as ?token=...; blank: reports are refused.")
    timeout = timeout_field()

    def validate_secret_id(self, value):
        return alnum_credential(value, "A SecretId is letters and digits, e.g. AKIDz8krbsJ5yKBZQpn74WFkmLPx3.")

    def validate_secret_key(self, value):
        return alnum_credential(value, "A SecretKey is letters and digits.")

    def validate_sign_name(self, value):
        return value.strip()

    def validate_endpoint(self, value):
        return url_option(value)

    def validate_callback_token(self, value):
        return callback_token_option(value)


class TencentBackend(HttpChannelBackend):
    kind = ChannelKind.SMS
    name = "tencent"
    label = "Tencent Cloud SMS (腾讯云短信)"
    Options = TencentOptions
    secret_fields = frozenset({"secret_key", "callback_token"})
    #: SendSms's documented default request limit.
    default_rate = "3000/s"

    @property
    def reports_delivery(self) -> bool:
        """Reports arrive only once a callback token is set (and the console points at us)."""
        return bool(self.options.get("callback_token"))

    @classmethod
    def validate_address(cls, address: str) -> str:
        return e164(address)

    def send(self, message: OutboundMessage) -> SendResult:
        content = message.content
        override = str(content.get("sign_name") or "").strip()
        payload = {
            "PhoneNumberSet": [self.validate_address(message.address)],
            "SmsSdkAppId": self.options["sms_sdk_app_id"],
            "TemplateId": template_code(content),
            "TemplateParamSet": _template_params(content.get("template_params")),
            "SessionContext": message.delivery_id,
        }
        sign_name = override or self.options.get("sign_name") or ""
        if sign_name:
            payload["SignName"] = sign_name
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        endpoint = self.options.get("endpoint") or DEFAULT_ENDPOINT
        host = _host(endpoint)
        timestamp = int(time.time())
        response = self.post(f"{endpoint}/", data=body, headers={
            "Host": host,
            "Content-Type": CONTENT_TYPE,
            "X-TC-Action": "SendSms",
            "X-TC-Version": API_VERSION,
            "X-TC-Timestamp": str(timestamp),
            "X-TC-Region": self.options.get("region") or "ap-guangzhou",
            "Authorization": tc3_authorization(secret_id=self.options["secret_id"],
                                               secret_key=self.options["secret_key"],
                                               host=host, timestamp=timestamp, payload=body),
        })
        answer = _json(response).get("Response")
        if not isinstance(answer, dict):
            raise PermanentChannelError("Tencent answered without a Response object.", code="bad_response",
                                        status=response.status_code, response=response.text)
        error = answer.get("Error")
        if isinstance(error, dict):
            raise tencent_error(str(error.get("Code") or "bad_response"), str(error.get("Message") or ""),
                                status=response.status_code, response=response.text,
                                sign_overridden=bool(override))
        statuses = answer.get("SendStatusSet") or [{}]
        status = statuses[0] if isinstance(statuses[0], dict) else {}
        code = str(status.get("Code") or "")
        if code != "Ok":
            raise tencent_error(code or "bad_response", str(status.get("Message") or ""),
                                status=response.status_code, response=response.text,
                                sign_overridden=bool(override))
        return SendResult(provider_message_id=str(status.get("SerialNo") or ""),
                          detail=f"RequestId={answer.get('RequestId', '')} Fee={status.get('Fee', '')}")

    def raise_for_status(self, response: requests.Response) -> None:
        """Tencent answers errors inside ``Response.Error`` (normally with HTTP 200) and
        ``send`` maps them; an answer without one goes by HTTP status."""
        answer = _json(response).get("Response")
        if not (isinstance(answer, dict) and isinstance(answer.get("Error"), dict)):
            super().raise_for_status(response)

    # --- status callbacks -----------------------------------------------------------------
    def receipts(self, request: CallbackRequest) -> list[Receipt]:
        check_callback_token(request, self.options.get("callback_token") or "")
        receipts = []
        for report in json_body(request):
            sid = str(report.get("sid") or "")
            if not sid:
                continue
            state = str(report.get("report_status") or "").upper()
            received = str(report.get("user_receive_time") or "")
            delivered = state == "SUCCESS"
            detail = "" if delivered else f"{report.get('errmsg') or ''}: {report.get('description') or ''}"
            receipts.append(Receipt(
                provider_message_id=sid,
                status="delivered" if delivered else "failed",
                event_id=f"{sid}:{state}:{received}",
                detail=detail.strip(": "),
                at=china_time(received),
            ))
        return receipts

    def receipt_response(self, receipts: list[Receipt]) -> tuple[int, str, bytes]:
        return 200, "application/json", b'{"result":0,"errmsg":"OK"}'


def _template_params(value) -> list[str]:
    """TemplateParamSet: the template's values in order, as strings."""
    if value in (None, "", [], {}):
        return []
    if isinstance(value, Mapping):
        value = list(value.values())
    if not isinstance(value, list | tuple):
        raise PermanentChannelError("Tencent template_params must be a list, or an object whose values are "
                                    "taken in order.", code="invalid_content")
    return ["" if v is None else str(v) for v in value]


def _host(endpoint: str) -> str:
    """The Host header (and signed ``host``): the port only when it is not the scheme's default."""
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port and parts.port != {"https": 443, "http": 80}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _json(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
