"""Tencent Cloud SMS backend against a local peer that behaves as SendSms (API 3.0).

The peer checks the X-TC-* headers and recomputes the TC3-HMAC-SHA256 signature from
Tencent's documentation (written here, not imported from the product, and checked against
Tencent's published example), then answers with SendSms's real bodies: SendStatusSet per
number, or Response.Error. Also verified: the mapping of Tencent's error codes, option
validation naming the field, and status callbacks guarded by the callback token.
"""
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.test import override_settings
from rest_framework.exceptions import ValidationError
from werkzeug import Request, Response

from channels_app.backends.tencent import TencentBackend
from channels_app.base import CallbackRejected, CallbackRequest
from channels_app.errors import AccountError, InvalidAddressError, PermanentChannelError, TransientChannelError
from channels_app.message import OutboundMessage

SECRET_ID = "AKID" + secrets.token_hex(16)
SECRET_KEY = secrets.token_hex(16)
APP_ID = "1400006666"
SIGN_NAME = "腾讯云"
TOKEN = secrets.token_urlsafe(24)
CALLBACK = "https://notify.example.com/hooks/channels/tencent-main/"
AUTHORIZATION = re.compile(
    r"TC3-HMAC-SHA256 Credential=(?P<id>[^/]+)/(?P<date>\d{4}-\d{2}-\d{2})/(?P<service>[a-z]+)/tc3_request, "
    r"SignedHeaders=(?P<headers>[a-z;-]+), Signature=(?P<signature>[0-9a-f]{64})")


def expected_signature(secret_key: str, *, service: str, host: str, content_type: str, timestamp: int,
                       payload: bytes) -> str:
    """From "Signature v3" (TC3-HMAC-SHA256): the canonical request is POST, "/", an empty
    query, the content-type and host headers (lower case), "content-type;host" and the hex
    SHA-256 of the body; the string to sign is the algorithm, the timestamp, the credential
    scope (UTC date/service/tc3_request) and the hex SHA-256 of the canonical request; the key
    is HMAC-SHA256 chained from "TC3" + SecretKey over the date, the service and "tc3_request"."""
    date = datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")
    canonical = (f"POST\n/\n\ncontent-type:{content_type.lower()}\nhost:{host.lower()}\n\ncontent-type;host\n"
                 f"{hashlib.sha256(payload).hexdigest()}")
    to_sign = (f"TC3-HMAC-SHA256\n{timestamp}\n{date}/{service}/tc3_request\n"
               f"{hashlib.sha256(canonical.encode()).hexdigest()}")
    key = ("TC3" + secret_key).encode()
    for part in (date, service, "tc3_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def test_expected_signature_matches_tencents_published_example():
    """The example of Tencent's signature v3 document (CVM DescribeInstances)."""
    payload = b'{"Limit": 1, "Filters": [{"Values": ["\\u672a\\u547d\\u540d"], "Name": "instance-name"}]}'

    assert expected_signature("Gu5t9xGARNpq86cd98joQYCN3EXAMPLE", service="cvm", host="cvm.tencentcloudapi.com",
                              content_type="application/json; charset=utf-8", timestamp=1551113065,
                              payload=payload) == "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"


def tencent_error(code: str, message: str) -> dict:
    return {"Response": {"Error": {"Code": code, "Message": message}, "RequestId": str(uuid.uuid4())}}


def send_status(code: str, message: str, phone: str = "+8613800138000", context: str = "") -> dict:
    ok = code == "Ok"
    return {"Response": {"SendStatusSet": [{
        "SerialNo": "5000:1045710669157053657849499619" if ok else "", "PhoneNumber": phone, "Fee": 1 if ok else 0,
        "SessionContext": context, "Code": code, "Message": message, "IsoCode": "CN",
    }], "RequestId": str(uuid.uuid4())}}


def json_response(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, content_type="application/json")


class TencentPeer:
    """SendSms as Tencent answers it: request errors (unknown SecretId, bad signature, stale
    timestamp, wrong action) as Response.Error with HTTP 200, then ``answer`` or success."""

    def __init__(self, answer: dict | None = None, region: str = "ap-guangzhou"):
        self.answer = answer
        self.region = region
        self.requests: list[Request] = []
        self.bodies: list[dict] = []

    def __call__(self, request: Request) -> Response:
        headers = request.headers
        if request.method != "POST" or request.path != "/":
            return json_response(tencent_error("InvalidAction", "expected POST /"))
        if (headers.get("X-TC-Action"), headers.get("X-TC-Version")) != ("SendSms", "2021-01-11"):
            return json_response(tencent_error("InvalidAction", "The action SendSms/2021-01-11 was expected."))
        if headers.get("X-TC-Region") != self.region:
            return json_response(tencent_error("InvalidParameterValue", "unexpected region"))
        match = AUTHORIZATION.fullmatch(headers.get("Authorization", ""))
        if not match:
            return json_response(tencent_error("AuthFailure.InvalidAuthorization", "Authorization is invalid."))
        timestamp = int(headers.get("X-TC-Timestamp", "0"))
        if abs(time.time() - timestamp) > 300:
            return json_response(tencent_error("AuthFailure.SignatureExpire", "Signature expired."))
        if match["id"] != SECRET_ID:
            return json_response(tencent_error("AuthFailure.SecretIdNotFound", "The SecretId is not found."))
        expected = expected_signature(SECRET_KEY, service="sms", host=headers["Host"],
                                      content_type=headers["Content-Type"], timestamp=timestamp,
                                      payload=request.get_data())
        if (match["service"], match["headers"]) != ("sms", "content-type;host") or \
                match["date"] != datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d") or \
                not hmac.compare_digest(match["signature"], expected):
            return json_response(tencent_error(
                "AuthFailure.SignatureFailure",
                "The provided credentials could not be validated. Please check your signature is correct."))
        body = json.loads(request.get_data())
        self.requests.append(request)
        self.bodies.append(body)
        if self.answer:
            return json_response(self.answer)
        return json_response(send_status("Ok", "send success", body["PhoneNumberSet"][0], body["SessionContext"]))


@pytest.fixture
def peer(httpserver):
    tencent = TencentPeer()
    httpserver.expect_request("/").respond_with_handler(tencent)
    return tencent


def options(httpserver, **overrides) -> dict:
    data = {"secret_id": SECRET_ID, "secret_key": SECRET_KEY, "sms_sdk_app_id": APP_ID, "sign_name": SIGN_NAME,
            "endpoint": httpserver.url_for("/")}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def backend(httpserver, **overrides) -> TencentBackend:
    return TencentBackend(options=TencentBackend.validate_options(options(httpserver, **overrides)),
                          account="tencent-main", callback_url=CALLBACK)


def message(address: str = "+8613800138000", **content) -> OutboundMessage:
    content = {"template_code": "449739", "template_params": ["123456", 5], **content}
    return OutboundMessage(delivery_id=str(uuid.uuid4()), kind="sms", address=address, content=content)


# --- sending ----------------------------------------------------------------------------------
def test_send_is_a_signed_sendsms_call(httpserver, peer):
    msg = message()

    result = backend(httpserver).send(msg)

    (request,), (body,) = peer.requests, peer.bodies
    assert request.headers["Content-Type"] == "application/json; charset=utf-8"
    assert request.headers["Host"] == f"localhost:{httpserver.port}"
    assert abs(int(request.headers["X-TC-Timestamp"]) - time.time()) < 60
    assert body == {"PhoneNumberSet": ["+8613800138000"], "SmsSdkAppId": APP_ID, "TemplateId": "449739",
                    "TemplateParamSet": ["123456", "5"], "SessionContext": msg.delivery_id, "SignName": SIGN_NAME}
    assert result.provider_message_id == "5000:1045710669157053657849499619"
    assert "Fee=1" in result.detail


def test_object_template_params_are_sent_as_its_values_in_order(httpserver, peer):
    backend(httpserver).send(message(template_params={"code": "8812", "minutes": 10, "who": "张三"}))

    assert peer.bodies[0]["TemplateParamSet"] == ["8812", "10", "张三"]


def test_sign_name_override_region_and_no_sign_name(httpserver):
    tencent = TencentPeer(region="ap-beijing")
    httpserver.expect_request("/").respond_with_handler(tencent)

    backend(httpserver, region="ap-beijing").send(message(sign_name="另一个签名"))
    backend(httpserver, region="ap-beijing", sign_name="").send(message(address="+447911123456"))

    first, second = tencent.bodies
    assert first["SignName"] == "另一个签名"
    assert "SignName" not in second
    assert second["PhoneNumberSet"] == ["+447911123456"]


def test_wrong_secret_key_fails_the_peers_signature_check(httpserver, peer):
    with pytest.raises(AccountError) as info:
        backend(httpserver, secret_key=secrets.token_hex(16)).send(message())

    assert info.value.code == "AuthFailure.SignatureFailure"
    assert peer.bodies == []


def test_unknown_secret_id_is_an_account_error(httpserver, peer):
    with pytest.raises(AccountError) as info:
        backend(httpserver, secret_id="AKIDunknown0000").send(message())

    assert info.value.code == "AuthFailure.SecretIdNotFound"


@pytest.mark.parametrize(("code", "text", "error", "wait"), [
    ("InvalidParameterValue.IncorrectPhoneNumber", "incorrect phone number", InvalidAddressError, None),
    ("FailedOperation.PhoneNumberInBlacklist", "phone number in blacklist", PermanentChannelError, None),
    ("FailedOperation.TemplateIncorrectOrUnapproved", "template incorrect or unapproved", PermanentChannelError,
     None),
    ("FailedOperation.ContainSensitiveWord", "content contains sensitive word", PermanentChannelError, None),
    ("FailedOperation.SignatureIncorrectOrUnapproved", "signature incorrect or unapproved", AccountError, None),
    ("FailedOperation.InsufficientBalanceInSmsPackage", "insufficient balance in SMS package", AccountError, None),
    ("LimitExceeded.PhoneNumberDailyLimit", "the number of SMS messages sent from a single mobile number every day "
                                            "exceeds the upper limit", TransientChannelError, None),
    ("LimitExceeded.PhoneNumberThirtySecondLimit", "the number of SMS messages sent from a single mobile number "
                                                   "within 30 seconds exceeds the upper limit",
     TransientChannelError, 30),
    ("LimitExceeded.PhoneNumberOneHourLimit", "one hour limit", TransientChannelError, 3600),
])
def test_per_number_codes_map_to_the_right_outcome(httpserver, code, text, error, wait):
    answer = send_status(code, text)
    httpserver.expect_request("/").respond_with_handler(TencentPeer(answer=answer))

    with pytest.raises(error) as info:
        backend(httpserver).send(message())

    assert type(info.value) is error
    assert info.value.code == code
    assert text in str(info.value)
    assert json.loads(info.value.response) == answer
    if wait is not None or error is TransientChannelError:
        assert info.value.retry_after == wait


@pytest.mark.parametrize(("code", "error"), [
    ("RequestLimitExceeded", TransientChannelError),
    ("InternalError.Timeout", TransientChannelError),
    ("UnauthorizedOperation.SmsSdkAppIdVerifyFail", AccountError),
    ("UnauthorizedOperation.SerivceSuspendDueToArrears", AccountError),
    ("UnauthorizedOperation.RequestIpNotInWhitelist", AccountError),
    ("InvalidParameterValue.SdkAppIdNotExist", AccountError),
    ("UnsupportedOperation.UnsuportedRegion", PermanentChannelError),
    ("FailedOperation.MarketingSendTimeConstraint", TransientChannelError),
])
def test_request_errors_map_to_the_right_outcome(httpserver, code, error):
    httpserver.expect_request("/").respond_with_handler(TencentPeer(answer=tencent_error(code, "from Tencent")))

    with pytest.raises(error) as info:
        backend(httpserver).send(message())

    assert type(info.value) is error
    assert info.value.code == code


def test_refused_template_signature_fails_only_that_delivery(httpserver):
    answer = send_status("FailedOperation.SignatureIncorrectOrUnapproved", "signature incorrect or unapproved")
    httpserver.expect_request("/").respond_with_handler(TencentPeer(answer=answer))

    with pytest.raises(PermanentChannelError) as info:
        backend(httpserver).send(message(sign_name="未审核"))

    assert type(info.value) is PermanentChannelError


def test_html_5xx_is_transient(httpserver):
    httpserver.expect_request("/").respond_with_response(Response("<html>504</html>", status=504))

    with pytest.raises(TransientChannelError) as info:
        backend(httpserver).send(message())

    assert info.value.status == 504


def test_missing_template_code_is_permanent_before_any_request(httpserver, peer):
    with pytest.raises(PermanentChannelError) as info:
        backend(httpserver).send(message(template_code=None))

    assert info.value.code == "no_template_code"
    assert httpserver.log == []


def test_invalid_number_names_it(httpserver, peer):
    with pytest.raises(InvalidAddressError) as info:
        backend(httpserver).send(message(address="+86 123"))

    assert "+86 123" in str(info.value)
    assert httpserver.log == []


# --- options ----------------------------------------------------------------------------------
def test_good_options_get_their_defaults():
    validated = TencentBackend.validate_options({"secret_id": SECRET_ID, "secret_key": SECRET_KEY,
                                                 "sms_sdk_app_id": APP_ID})

    assert validated == {"secret_id": SECRET_ID, "secret_key": SECRET_KEY, "sms_sdk_app_id": APP_ID,
                         "sign_name": "", "region": "ap-guangzhou", "endpoint": "https://sms.tencentcloudapi.com",
                         "callback_token": "", "timeout": 10.0}
    assert TencentBackend.secret_fields == {"secret_key", "callback_token"}


@pytest.mark.parametrize(("overrides", "field"), [
    ({"secret_id": None}, "secret_id"),
    ({"secret_key": None}, "secret_key"),
    ({"sms_sdk_app_id": None}, "sms_sdk_app_id"),
    ({"sms_sdk_app_id": "app-1"}, "sms_sdk_app_id"),
    ({"secret_id": "AKID with space"}, "secret_id"),
    ({"endpoint": "ftp://sms.tencentcloudapi.com"}, "endpoint"),
    ({"region": "Guangzhou"}, "region"),
    ({"callback_token": "short"}, "callback_token"),
])
def test_bad_options_name_the_field(httpserver, overrides, field):
    with pytest.raises(ValidationError) as info:
        TencentBackend.validate_options(options(httpserver, **overrides))

    assert set(info.value.detail) == {field}


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[])
def test_private_endpoint_is_refused(httpserver):
    with pytest.raises(ValidationError) as info:
        TencentBackend.validate_options(options(httpserver, endpoint="http://169.254.169.254/"))

    assert set(info.value.detail) == {"endpoint"}
    assert "private or reserved" in str(info.value.detail["endpoint"][0])


# --- status callbacks -------------------------------------------------------------------------
REPORTS = [
    {"user_receive_time": "2024-05-01 10:00:04", "nationcode": "86", "mobile": "13800138000",
     "report_status": "SUCCESS", "errmsg": "DELIVRD", "description": "用户短信送达成功",
     "sid": "5000:1045710669157053657849499619"},
    {"user_receive_time": "2024-05-01 10:00:09", "nationcode": "86", "mobile": "13900139000",
     "report_status": "FAIL", "errmsg": "MK:0005", "description": "空号",
     "sid": "5000:1045710669157053657849499620"},
]


def report_request(token: str | None = TOKEN, body: bytes | None = None) -> CallbackRequest:
    url = CALLBACK + (f"?token={token}" if token is not None else "")
    return CallbackRequest(method="POST", url=url, headers={"Content-Type": "application/json"},
                           body=json.dumps(REPORTS, ensure_ascii=False).encode() if body is None else body,
                           query={"token": token} if token is not None else {})


def report_backend(token: str = TOKEN) -> TencentBackend:
    return TencentBackend(options={"secret_id": SECRET_ID, "secret_key": SECRET_KEY, "sms_sdk_app_id": APP_ID,
                                   "callback_token": token}, account="tencent-main", callback_url=CALLBACK)


def test_reports_become_receipts():
    delivered, failed = report_backend().receipts(report_request())

    assert delivered.provider_message_id == "5000:1045710669157053657849499619"
    assert delivered.status == "delivered"
    assert delivered.at == datetime(2024, 5, 1, 10, 0, 4, tzinfo=timezone(timedelta(hours=8)))
    assert failed.provider_message_id == "5000:1045710669157053657849499620"
    assert failed.status == "failed"
    assert "MK:0005" in failed.detail and "空号" in failed.detail
    assert delivered.event_id != failed.event_id


@pytest.mark.parametrize("token", [None, "", TOKEN[:-1] + ("x" if TOKEN[-1] != "x" else "y")])
def test_missing_or_wrong_token_is_rejected(token):
    with pytest.raises(CallbackRejected):
        report_backend().receipts(report_request(token=token))


def test_account_without_a_token_refuses_reports():
    """Unsigned reports from anyone could fail deliveries and trigger paid fallbacks."""
    backend = report_backend(token="")
    with pytest.raises(CallbackRejected):
        backend.receipts(report_request(token=None))
    assert not backend.reports_delivery
    assert report_backend().reports_delivery


def test_malformed_body_is_rejected():
    with pytest.raises(CallbackRejected):
        report_backend().receipts(report_request(body=b'{"result": '))


def test_receipt_response_is_what_tencent_expects():
    status, content_type, body = report_backend().receipt_response([])

    assert (status, content_type) == (200, "application/json")
    assert json.loads(body) == {"result": 0, "errmsg": "OK"}
