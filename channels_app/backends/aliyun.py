"""Alibaba Cloud SMS (阿里云短信服务, Dysmsapi): template messages with delivery reports.

Implements, from help.aliyun.com: *SendSms* (API version 2017-05-25) called in the RPC style
with the HMAC-SHA1 request signature (``SignatureVersion=1.0``: the sorted parameters,
percent-encoded per RFC 3986 — space ``%20``, ``*`` ``%2A``, ``~`` kept — form
``POST&%2F&<encoded query>``, signed with ``AccessKeySecret + "&"``), the JSON answer
(``Code``, ``Message``, ``BizId``, ``RequestId``) and its documented error codes, and the
*SmsReport* HTTP batch push of delivery reports (a JSON array, acknowledged with
``{"code": 0, "msg": "接收成功"}``).

A small client rather than the Alibaba SDK: one signed POST does not need a dependency tree,
and the shared session gives timeouts, connection reuse and the outbound URL check.
"""
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Mapping
from urllib.parse import quote

import phonenumbers
import requests
from rest_framework import serializers

from channels_app.backends.sms_common import (
    alnum_credential,
    callback_token_option,
    check_callback_token,
    china_time,
    e164,
    json_body,
    parse_phone,
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

DEFAULT_ENDPOINT = "https://dysmsapi.aliyuncs.com"
API_VERSION = "2017-05-25"

ACCOUNT_ERRORS = frozenset({
    "InvalidAccessKeyId.NotFound", "InvalidAccessKeyId.Inactive", "SignatureDoesNotMatch",
    "IncompleteSignature", "Forbidden.RAM", "isp.RAM_PERMISSION_DENY", "isv.OUT_OF_SERVICE",
    "isv.PRODUCT_UN_SUBSCRIPT", "isv.PRODUCT_UNSUBSCRIBE", "isv.ACCOUNT_NOT_EXISTS",
    "isv.ACCOUNT_ABNORMAL", "isv.AMOUNT_NOT_ENOUGH", "isv.DENY_IP_RANGE", "isv.MONTH_LIMIT_CONTROL",
})
#: The signature (签名) was refused: the account's fault unless a template overrode it.
SIGN_ERRORS = frozenset({"isv.SMS_SIGNATURE_ILLEGAL", "isv.SMS_SIGN_ILLEGAL", "isv.SIGN_STATE_ILLEGAL"})
ADDRESS_ERRORS = frozenset({"isv.MOBILE_NUMBER_ILLEGAL", "isv.PHONE_NUMBER_ILLEGAL"})
TRANSIENT_ERRORS = frozenset({
    "isv.BUSINESS_LIMIT_CONTROL", "isv.DAY_LIMIT_CONTROL", "Throttling", "Throttling.User",
    "Throttling.Api", "ServiceUnavailable", "InternalError", "isp.SYSTEM_ERROR", "isp.GATEWAY_ERROR",
    "SignatureNonceUsed", "InvalidTimeStamp.Expired",
})
#: isv.BUSINESS_LIMIT_CONTROL says which per-number window it hit ("触发分钟级流控Permits:1").
FLOW_CONTROL_WAIT = {"分钟级": 60.0, "小时级": 3600.0}


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as Alibaba's signature wants it: only A-Z a-z 0-9 - _ . ~ stay."""
    return quote(value, safe="~")


def rpc_signature(access_key_secret: str, method: str, params: Mapping[str, str]) -> str:
    """The ``Signature`` parameter for an RPC request carrying ``params``."""
    query = "&".join(f"{percent_encode(k)}={percent_encode(params[k])}" for k in sorted(params))
    string_to_sign = f"{method}&{percent_encode('/')}&{percent_encode(query)}"
    digest = hmac.new(f"{access_key_secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def aliyun_number(address: str) -> str:
    """Mainland numbers go without a prefix (``13800138000``), others as country code and
    number without ``+`` (``85291234567``), as SendSms's PhoneNumbers wants them."""
    number = parse_phone(address)
    national = phonenumbers.national_significant_number(number)
    return national if number.country_code == 86 else f"{number.country_code}{national}"


def aliyun_error(code: str, message: str, *, status: int, response: str,
                 sign_overridden: bool = False) -> ChannelError:
    text = f"Aliyun {code}: {message}".strip()
    kwargs = {"code": code, "status": status, "response": response}
    if code in ACCOUNT_ERRORS or code.startswith("InvalidAccessKeyId"):
        return AccountError(text, **kwargs)
    if code in SIGN_ERRORS:
        return sign_name_error(overridden=sign_overridden)(text, **kwargs)
    if code in ADDRESS_ERRORS:
        return InvalidAddressError(text, **kwargs)
    if code in TRANSIENT_ERRORS or code.startswith(("isp.", "Throttling")) or status >= 500:
        wait = next((s for window, s in FLOW_CONTROL_WAIT.items() if window in message), None)
        return TransientChannelError(text, retry_after=wait, **kwargs)
    return PermanentChannelError(text, **kwargs)


class AliyunOptions(serializers.Serializer):
    access_key_id = serializers.CharField(help_text="AccessKey ID of a RAM user allowed to send SMS.")
    access_key_secret = serializers.CharField(help_text="Secret. The AccessKey secret.")
    sign_name = serializers.CharField(help_text="Approved SMS signature (签名), e.g. 阿里云短信测试.")
    endpoint = serializers.URLField(default=DEFAULT_ENDPOINT, help_text="Dysmsapi endpoint.")
    region_id = serializers.RegexField(r"^[a-z]{2,}(-[a-z0-9]+)+$", default="cn-hangzhou",
                                       help_text="RegionId sent with each call.")
    callback_token = serializers.CharField(
        required=False, allow_blank=True, default="",
        help_text="Secret. Token the SmsReport push must carry as ?token=...; blank: reports are refused.")
    timeout = timeout_field()

    def validate_access_key_id(self, value):
        return alnum_credential(value, "An AccessKey ID is letters and digits, e.g. LTAI5t...")

    def validate_access_key_secret(self, value):
        return alnum_credential(value, "An AccessKey secret is letters and digits.")

    def validate_sign_name(self, value):
        return value.strip()

    def validate_endpoint(self, value):
        return url_option(value)

    def validate_callback_token(self, value):
        return callback_token_option(value)


class AliyunBackend(HttpChannelBackend):
    kind = ChannelKind.SMS
    name = "aliyun"
    label = "Alibaba Cloud SMS (阿里云短信)"
    Options = AliyunOptions
    secret_fields = frozenset({"access_key_secret", "callback_token"})
    #: SendSms's documented per-account API limit; the per-number flow control (one code a
    #: minute per number...) is answered as isv.BUSINESS_LIMIT_CONTROL and retried.
    default_rate = "5000/s"

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
        params = {
            "AccessKeyId": self.options["access_key_id"],
            "Action": "SendSms",
            "Format": "JSON",
            "RegionId": self.options.get("region_id") or "cn-hangzhou",
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "Version": API_VERSION,
            "PhoneNumbers": aliyun_number(message.address),
            "SignName": override or self.options["sign_name"],
            "TemplateCode": template_code(content),
            "OutId": message.delivery_id,
        }
        template_params = _template_params(content.get("template_params"))
        if template_params:
            params["TemplateParam"] = template_params
        params["Signature"] = rpc_signature(self.options["access_key_secret"], "POST", params)
        response = self.post(f"{self.options.get('endpoint') or DEFAULT_ENDPOINT}/", data=params,
                             headers={"Accept": "application/json"})
        body = _json(response)
        code = str(body.get("Code") or "")
        if code != "OK":
            raise aliyun_error(code or "bad_response", str(body.get("Message") or ""),
                               status=response.status_code, response=response.text,
                               sign_overridden=bool(override))
        return SendResult(provider_message_id=str(body.get("BizId") or ""),
                          detail=f"RequestId={body.get('RequestId', '')}")

    def raise_for_status(self, response: requests.Response) -> None:
        """Aliyun answers every error as JSON ``{"Code", "Message"}`` — business errors with
        HTTP 200, gateway errors (signature, throttling) with 4xx/5xx — and ``send`` maps
        them all; only answers without a code go by HTTP status."""
        if not _json(response).get("Code"):
            super().raise_for_status(response)

    # --- delivery reports -----------------------------------------------------------------
    def receipts(self, request: CallbackRequest) -> list[Receipt]:
        check_callback_token(request, self.options.get("callback_token") or "")
        receipts = []
        for report in json_body(request):
            biz_id = str(report.get("biz_id") or "")
            if not biz_id:
                continue
            delivered = report.get("success") in (True, "true", "True")
            report_time = str(report.get("report_time") or "")
            err_code = str(report.get("err_code") or "")
            receipts.append(Receipt(
                provider_message_id=biz_id,
                status="delivered" if delivered else "failed",
                event_id=f"{biz_id}:{report_time}:{err_code}",
                detail="" if delivered else f"{err_code}: {report.get('err_msg') or ''}".strip(),
                at=china_time(report_time),
            ))
        return receipts

    def receipt_response(self, receipts: list[Receipt]) -> tuple[int, str, bytes]:
        body = json.dumps({"code": 0, "msg": "接收成功"}, ensure_ascii=False)
        return 200, "application/json; charset=utf-8", body.encode()


def _template_params(value) -> str:
    """TemplateParam: a JSON object of strings (Aliyun refuses numbers: isv.INVALID_JSON_PARAM)."""
    if value in (None, "", {}):
        return ""
    if not isinstance(value, Mapping):
        raise PermanentChannelError("Aliyun template_params must be an object of name: value.",
                                    code="invalid_content")
    params = {str(k): "" if v is None else str(v) for k, v in value.items()}
    return json.dumps(params, ensure_ascii=False, separators=(",", ":"))


def _json(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
