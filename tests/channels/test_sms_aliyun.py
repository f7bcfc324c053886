"""Aliyun SMS backend against a local peer that behaves as Dysmsapi's SendSms.

The peer checks the RPC common parameters and recomputes the HMAC-SHA1 request signature
from Alibaba's documentation (written here, not imported from the product), refuses a reused
SignatureNonce, and answers with Dysmsapi's real success and error bodies. Also verified:
the mapping of Aliyun's error codes, option validation naming the field, and the SmsReport
push of delivery reports guarded by the callback token.
"""
import base64
import hashlib
import hmac
import json
import secrets
import string
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qs

import pytest
from django.test import override_settings
from rest_framework.exceptions import ValidationError
from werkzeug import Request, Response

from channels_app.backends.aliyun import AliyunBackend
from channels_app.base import CallbackRejected, CallbackRequest
from channels_app.errors import AccountError, InvalidAddressError, PermanentChannelError, TransientChannelError
from channels_app.message import OutboundMessage

KEY_ID = "LTAI5tQ8" + secrets.token_hex(8)
KEY_SECRET = secrets.token_hex(15)
SIGN_NAME = "阿里云短信测试"
TOKEN = secrets.token_urlsafe(24)
CALLBACK = "https://notify.example.com/hooks/channels/aliyun-main/"
UNRESERVED = set(string.ascii_letters + string.digits + "-_.~")
COMMON = {"Action": "SendSms", "Format": "JSON", "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0",
          "Version": "2017-05-25"}


def encode(text: str) -> str:
    """Alibaba's percent-encoding: RFC 3986 unreserved characters stay, every other UTF-8
    byte becomes %XX in upper case (so space is %20, * is %2A, ~ stays)."""
    return "".join(ch if ch in UNRESERVED else "".join(f"%{b:02X}" for b in ch.encode()) for ch in text)


def expected_signature(secret: str, method: str, params: dict) -> str:
    """From "Request syntax and signature method for RPC APIs": sort the parameters (without
    Signature) by name, encode names and values, join with = and &; StringToSign is
    METHOD&%2F&encode(that); Signature = base64(HMAC-SHA1(secret + "&", StringToSign))."""
    canonical = "&".join(f"{encode(name)}={encode(params[name])}" for name in sorted(params))
    string_to_sign = f"{method}&{encode('/')}&{encode(canonical)}"
    return base64.b64encode(hmac.new(f"{secret}&".encode(), string_to_sign.encode(), hashlib.sha1).digest()).decode()


def test_encoding_follows_the_documented_rules():
    assert encode("a b*c~d/é") == "a%20b%2Ac~d%2F%C3%A9"


def aliyun_body(code: str, message: str, **extra) -> dict:
    return {"Message": message, "RequestId": str(uuid.uuid4()).upper(), "Code": code, **extra}


def json_response(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, content_type="application/json;charset=utf-8")


class AliyunPeer:
    """Dysmsapi as it answers SendSms: gateway errors (unknown key 404, bad signature 400,
    reused nonce 400) before the business answer, which is ``answer`` or success."""

    def __init__(self, answer: tuple[dict, int] | None = None):
        self.answer = answer
        self.forms: list[dict] = []
        self.nonces: set[str] = set()

    def __call__(self, request: Request) -> Response:
        if request.method != "POST" or request.path != "/" or \
                not request.content_type.startswith("application/x-www-form-urlencoded"):
            return json_response(aliyun_body("InvalidParameter", "expected a form POST to /"), 400)
        form = {k: v[0] for k, v in parse_qs(request.get_data(as_text=True), keep_blank_values=True).items()}
        for name, value in COMMON.items():
            if form.get(name) != value:
                return json_response(aliyun_body("MissingParameter", f"{name} must be {value}"), 400)
        when = datetime.strptime(form.get("Timestamp", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        if abs(datetime.now(UTC) - when) > timedelta(minutes=15):
            return json_response(
                aliyun_body("InvalidTimeStamp.Expired", "Specified time stamp or date value is expired."), 400)
        if form.get("AccessKeyId") != KEY_ID:
            return json_response(aliyun_body("InvalidAccessKeyId.NotFound", "Specified access key is not found.",
                                             HostId="dysmsapi.aliyuncs.com"), 404)
        signature = form.pop("Signature", "")
        if not hmac.compare_digest(signature, expected_signature(KEY_SECRET, "POST", form)):
            return json_response(aliyun_body(
                "SignatureDoesNotMatch", "Specified signature is not matched with our calculation.",
                HostId="dysmsapi.aliyuncs.com"), 400)
        if form["SignatureNonce"] in self.nonces:
            return json_response(aliyun_body("SignatureNonceUsed", "Specified signature nonce was used already."), 400)
        self.nonces.add(form["SignatureNonce"])
        self.forms.append(form)
        if self.answer:
            return json_response(*self.answer)
        return json_response(aliyun_body("OK", "OK", BizId=f"{int(time.time() * 1000)}{len(self.forms)}^0"))


@pytest.fixture
def peer(httpserver):
    aliyun = AliyunPeer()
    httpserver.expect_request("/").respond_with_handler(aliyun)
    return aliyun


def options(httpserver, **overrides) -> dict:
    data = {"access_key_id": KEY_ID, "access_key_secret": KEY_SECRET, "sign_name": SIGN_NAME,
            "endpoint": httpserver.url_for("/")}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def backend(httpserver, **overrides) -> AliyunBackend:
    return AliyunBackend(options=AliyunBackend.validate_options(options(httpserver, **overrides)),
                         account="aliyun-main", callback_url=CALLBACK)


def message(address: str = "+8613800138000", **content) -> OutboundMessage:
    content = {"template_code": "SMS_154950909", "template_params": {"code": "123456"}, **content}
    return OutboundMessage(delivery_id=str(uuid.uuid4()), kind="sms", address=address, content=content)


# --- sending ----------------------------------------------------------------------------------
def test_send_is_a_signed_sendsms_call(httpserver, peer):
    msg = message(template_params={"code": "123456", "minutes": 5, "name": "张三 & *co*"})

    result = backend(httpserver).send(msg)

    (form,) = peer.forms
    assert form["PhoneNumbers"] == "13800138000"
    assert form["SignName"] == SIGN_NAME
    assert form["TemplateCode"] == "SMS_154950909"
    assert json.loads(form["TemplateParam"]) == {"code": "123456", "minutes": "5", "name": "张三 & *co*"}
    assert form["OutId"] == msg.delivery_id
    assert form["RegionId"] == "cn-hangzhou"
    assert result.provider_message_id.endswith("^0")
    assert result.detail.startswith("RequestId=")


def test_international_number_is_country_code_and_number(httpserver, peer):
    backend(httpserver).send(message(address="+852 9123 4567"))

    assert peer.forms[0]["PhoneNumbers"] == "85291234567"


def test_template_sign_name_overrides_the_account(httpserver, peer):
    backend(httpserver, region_id="cn-shanghai").send(message(sign_name="另一个签名", template_params={}))

    (form,) = peer.forms
    assert form["SignName"] == "另一个签名"
    assert form["RegionId"] == "cn-shanghai"
    assert "TemplateParam" not in form


def test_each_call_has_a_new_nonce(httpserver, peer):
    b = backend(httpserver)
    b.send(message())
    b.send(message())

    assert len(peer.nonces) == 2


def test_wrong_secret_fails_the_peers_signature_check(httpserver, peer):
    with pytest.raises(AccountError) as info:
        backend(httpserver, access_key_secret=secrets.token_hex(15)).send(message())

    assert info.value.code == "SignatureDoesNotMatch"
    assert info.value.status == 400
    assert peer.forms == []


def test_unknown_access_key_is_an_account_error(httpserver, peer):
    with pytest.raises(AccountError) as info:
        backend(httpserver, access_key_id="LTAI5tUnknown0000").send(message())

    assert info.value.code == "InvalidAccessKeyId.NotFound"
    assert info.value.status == 404


@pytest.mark.parametrize(("code", "text", "status", "error"), [
    ("isv.MOBILE_NUMBER_ILLEGAL", "非法手机号", 200, InvalidAddressError),
    ("isv.AMOUNT_NOT_ENOUGH", "账户余额不足", 200, AccountError),
    ("isv.OUT_OF_SERVICE", "业务停机", 200, AccountError),
    ("isp.RAM_PERMISSION_DENY", "RAM权限DENY", 200, AccountError),
    ("isv.MONTH_LIMIT_CONTROL", "触发月发送限额", 200, AccountError),
    ("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名", 200, AccountError),
    ("isv.SMS_TEMPLATE_ILLEGAL", "该账号下找不到对应模板", 200, PermanentChannelError),
    ("isv.TEMPLATE_MISSING_PARAMETERS", "模板变量缺少对应参数值", 200, PermanentChannelError),
    ("isv.BLACK_KEY_CONTROL_LIMIT", "黑名单管控", 200, PermanentChannelError),
    ("isv.INVALID_JSON_PARAM", "JSON参数不合法，只接受字符串值", 200, PermanentChannelError),
    ("isv.DAY_LIMIT_CONTROL", "触发日发送限额", 200, TransientChannelError),
    ("isv.BUSINESS_LIMIT_CONTROL", "触发天级流控Permits:10", 200, TransientChannelError),
    ("isp.SYSTEM_ERROR", "isp.SYSTEM_ERROR", 200, TransientChannelError),
    ("Throttling.User", "Request was denied due to user flow control.", 400, TransientChannelError),
    ("ServiceUnavailable", "The request has failed due to a temporary failure of the server.", 503,
     TransientChannelError),
    ("isv.SOMETHING_NEW", "a code notifyhub does not list", 200, PermanentChannelError),
])
def test_aliyun_codes_map_to_the_right_outcome(httpserver, code, text, status, error):
    body = aliyun_body(code, text)
    httpserver.expect_request("/").respond_with_handler(AliyunPeer(answer=(body, status)))

    with pytest.raises(error) as info:
        backend(httpserver).send(message())

    assert type(info.value) is error
    assert info.value.code == code
    assert info.value.status == status
    assert text in str(info.value)
    assert json.loads(info.value.response) == body


@pytest.mark.parametrize(("text", "wait"), [("触发分钟级流控Permits:1", 60), ("触发小时级流控Permits:5", 3600),
                                            ("触发天级流控Permits:10", None)])
def test_flow_control_says_how_long_to_wait(httpserver, text, wait):
    httpserver.expect_request("/").respond_with_handler(
        AliyunPeer(answer=(aliyun_body("isv.BUSINESS_LIMIT_CONTROL", text), 200)))

    with pytest.raises(TransientChannelError) as info:
        backend(httpserver).send(message())

    assert info.value.retry_after == wait


def test_refused_template_signature_fails_only_that_delivery(httpserver):
    """A sign_name from the template that Aliyun refuses is not the account's fault."""
    httpserver.expect_request("/").respond_with_handler(
        AliyunPeer(answer=(aliyun_body("isv.SMS_SIGNATURE_ILLEGAL", "该账号下找不到对应签名"), 200)))

    with pytest.raises(PermanentChannelError) as info:
        backend(httpserver).send(message(sign_name="未审核的签名"))

    assert type(info.value) is PermanentChannelError


def test_html_5xx_is_transient(httpserver):
    httpserver.expect_request("/").respond_with_response(Response("<html>502</html>", status=502))

    with pytest.raises(TransientChannelError):
        backend(httpserver).send(message())


def test_missing_template_code_is_permanent_before_any_request(httpserver, peer):
    with pytest.raises(PermanentChannelError) as info:
        backend(httpserver).send(message(template_code=""))

    assert info.value.code == "no_template_code"
    assert httpserver.log == []


def test_template_params_must_be_an_object(httpserver, peer):
    with pytest.raises(PermanentChannelError) as info:
        backend(httpserver).send(message(template_params=["123456"]))

    assert info.value.code == "invalid_content"
    assert httpserver.log == []


def test_invalid_number_names_it(httpserver, peer):
    with pytest.raises(InvalidAddressError) as info:
        backend(httpserver).send(message(address="13800138000"))

    assert "13800138000" in str(info.value)
    assert httpserver.log == []


# --- options ----------------------------------------------------------------------------------
def test_good_options_get_their_defaults():
    validated = AliyunBackend.validate_options({"access_key_id": KEY_ID, "access_key_secret": KEY_SECRET,
                                                "sign_name": SIGN_NAME})

    assert validated == {"access_key_id": KEY_ID, "access_key_secret": KEY_SECRET, "sign_name": SIGN_NAME,
                         "endpoint": "https://dysmsapi.aliyuncs.com", "region_id": "cn-hangzhou",
                         "callback_token": "", "timeout": 10.0}
    assert AliyunBackend.secret_fields == {"access_key_secret", "callback_token"}


@pytest.mark.parametrize(("overrides", "field"), [
    ({"access_key_id": None}, "access_key_id"),
    ({"access_key_secret": None}, "access_key_secret"),
    ({"sign_name": None}, "sign_name"),
    ({"access_key_id": "LTAI 5t/x"}, "access_key_id"),
    ({"endpoint": "dysmsapi.aliyuncs.com"}, "endpoint"),
    ({"region_id": "Hangzhou"}, "region_id"),
    ({"callback_token": "short"}, "callback_token"),
    ({"callback_token": "has spaces and & in it!"}, "callback_token"),
])
def test_bad_options_name_the_field(httpserver, overrides, field):
    with pytest.raises(ValidationError) as info:
        AliyunBackend.validate_options(options(httpserver, **overrides))

    assert set(info.value.detail) == {field}


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[])
def test_private_endpoint_is_refused(httpserver):
    with pytest.raises(ValidationError) as info:
        AliyunBackend.validate_options(options(httpserver, endpoint="http://192.168.1.10/"))

    assert set(info.value.detail) == {"endpoint"}
    assert "private or reserved" in str(info.value.detail["endpoint"][0])


# --- delivery reports -------------------------------------------------------------------------
REPORTS = [
    {"phone_number": "13800138000", "send_time": "2024-05-01 10:00:00", "report_time": "2024-05-01 10:00:08",
     "success": True, "err_code": "DELIVERED", "err_msg": "用户接收成功", "sms_size": "1",
     "biz_id": "900619746936498440^0", "out_id": "d-1"},
    {"phone_number": "13900139000", "send_time": "2024-05-01 10:00:00", "report_time": "2024-05-01 10:00:31",
     "success": False, "err_code": "MK:0001", "err_msg": "空号", "sms_size": "1",
     "biz_id": "900619746936498441^0", "out_id": "d-2"},
]


def report_request(token: str | None = TOKEN, body: bytes | None = None) -> CallbackRequest:
    url = CALLBACK + (f"?token={token}" if token is not None else "")
    return CallbackRequest(method="POST", url=url, headers={"Content-Type": "application/json"},
                           body=json.dumps(REPORTS, ensure_ascii=False).encode() if body is None else body,
                           query={"token": token} if token is not None else {})


def report_backend(token: str = TOKEN) -> AliyunBackend:
    return AliyunBackend(options={"access_key_id": KEY_ID, "access_key_secret": KEY_SECRET, "sign_name": SIGN_NAME,
                                  "callback_token": token}, account="aliyun-main", callback_url=CALLBACK)


def test_reports_become_receipts():
    delivered, failed = report_backend().receipts(report_request())

    beijing = timezone(timedelta(hours=8))
    assert delivered.provider_message_id == "900619746936498440^0"
    assert delivered.status == "delivered"
    assert delivered.at == datetime(2024, 5, 1, 10, 0, 8, tzinfo=beijing)
    assert delivered.at == datetime(2024, 5, 1, 2, 0, 8, tzinfo=UTC)
    assert failed.provider_message_id == "900619746936498441^0"
    assert failed.status == "failed"
    assert "MK:0001" in failed.detail and "空号" in failed.detail
    assert delivered.event_id != failed.event_id
    assert report_backend().receipts(report_request())[0].event_id == delivered.event_id  # a repeat is the same


@pytest.mark.parametrize("token", [None, "", "wrong-token-0123456789abcdef"])
def test_missing_or_wrong_token_is_rejected(token):
    with pytest.raises(CallbackRejected):
        report_backend().receipts(report_request(token=token))


def test_token_is_read_from_the_url_when_the_query_was_not_parsed():
    request = report_request()
    bare = CallbackRequest(method="POST", url=request.url, headers=request.headers, body=request.body)

    assert len(report_backend().receipts(bare)) == 2


def test_account_without_a_token_refuses_reports():
    """Unsigned reports from anyone could fail deliveries and trigger paid fallbacks."""
    backend = report_backend(token="")
    with pytest.raises(CallbackRejected):
        backend.receipts(report_request(token=None))
    assert not backend.reports_delivery
    assert report_backend().reports_delivery


def test_malformed_body_is_rejected():
    with pytest.raises(CallbackRejected):
        report_backend().receipts(report_request(body=b"<xml/>"))


def test_receipt_response_is_what_aliyun_expects():
    status, content_type, body = report_backend().receipt_response([])

    assert status == 200
    assert content_type.startswith("application/json")
    assert json.loads(body) == {"code": 0, "msg": "接收成功"}
