"""Twilio SMS backend against a local peer that behaves as Twilio's Messages resource.

Verified: the request (path with the Account SID, HTTP Basic auth, form fields To/From or
MessagingServiceSid/Body/StatusCallback); the message sid returned; Twilio's JSON error bodies
mapped to account / invalid address / permanent / transient errors with Retry-After; option
validation naming the field; and status callbacks signed as Twilio's docs describe (the
expected X-Twilio-Signature is computed here, from the docs, and checked against Twilio's
published example).
"""
import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from urllib.parse import parse_qs, urlencode

import pytest
from django.test import override_settings
from rest_framework.exceptions import ValidationError
from werkzeug import Request, Response

from channels_app.backends.twilio import TwilioBackend
from channels_app.base import CallbackRejected, CallbackRequest, Receipt
from channels_app.errors import (
    AccountError,
    DeadAddressError,
    InvalidAddressError,
    PermanentChannelError,
    TransientChannelError,
)
from channels_app.message import OutboundMessage, SendResult

ACCOUNT_SID = "AC" + "3f9a1c" * 5 + "d2"
AUTH_TOKEN = secrets.token_hex(16)
SERVICE_SID = "MG" + "0a1b2c3d" * 4
FROM = "+15017122661"
TO = "+14155552671"
CALLBACK = "https://notify.example.com/hooks/channels/twilio-main/"
MESSAGES_PATH = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


def twilio_error(code: int, message: str, status: int) -> dict:
    """Twilio's REST error body, as its API answers it."""
    return {"code": code, "message": message, "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status}


class TwilioPeer:
    """Answers like Twilio's Messages resource: 401 (code 20003) to wrong Basic credentials,
    400 (code 21604/21602) to a missing To/Body, else 201 with the Message resource."""

    def __init__(self, auth_token: str = AUTH_TOKEN):
        self.auth_token = auth_token
        self.requests: list[Request] = []
        self.forms: list[dict] = []

    def __call__(self, request: Request) -> Response:
        expected = "Basic " + base64.b64encode(f"{ACCOUNT_SID}:{self.auth_token}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return json_response(twilio_error(20003, "Authenticate", 401), 401)
        if request.method != "POST" or not request.content_type.startswith("application/x-www-form-urlencoded"):
            return json_response(twilio_error(20001, "Bad request", 400), 400)
        form = {k: v[0] for k, v in parse_qs(request.get_data(as_text=True), keep_blank_values=True).items()}
        if not form.get("To"):
            return json_response(twilio_error(21604, "A 'To' phone number is required.", 400), 400)
        if not form.get("Body"):
            return json_response(twilio_error(21602, "Message body is required.", 400), 400)
        self.requests.append(request)
        self.forms.append(form)
        sid = "SM" + uuid.uuid4().hex
        return json_response({
            "account_sid": ACCOUNT_SID, "api_version": "2010-04-01", "body": form["Body"],
            "date_created": "Thu, 24 Aug 2023 05:01:45 +0000", "date_sent": None,
            "date_updated": "Thu, 24 Aug 2023 05:01:45 +0000", "direction": "outbound-api",
            "error_code": None, "error_message": None, "from": form.get("From"),
            "messaging_service_sid": form.get("MessagingServiceSid"), "num_media": "0", "num_segments": "1",
            "price": None, "price_unit": "USD", "sid": sid, "status": "queued",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}/Media.json"},
            "to": form["To"], "uri": f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages/{sid}.json",
        }, 201)


def json_response(body: dict, status: int, headers: dict | None = None) -> Response:
    return Response(json.dumps(body), status=status, headers=headers or {}, content_type="application/json")


def options(httpserver, **overrides) -> dict:
    data = {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": FROM,
            "api_base": httpserver.url_for("/")}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def backend(httpserver, callback_url: str = CALLBACK, **overrides) -> TwilioBackend:
    return TwilioBackend(options=TwilioBackend.validate_options(options(httpserver, **overrides)),
                         account="twilio-main", callback_url=callback_url)


def message(address: str = TO, text: str = "Your code is 123456", **content) -> OutboundMessage:
    return OutboundMessage(delivery_id=str(uuid.uuid4()), kind="sms", address=address,
                           content={"text": text, **content})


@pytest.fixture
def peer(httpserver):
    twilio = TwilioPeer()
    httpserver.expect_request(MESSAGES_PATH).respond_with_handler(twilio)
    return twilio


# --- sending ----------------------------------------------------------------------------------
def test_send_posts_the_documented_form_with_basic_auth(httpserver, peer):
    result = backend(httpserver).send(message(text="Your code is 123456 ✓"))

    (request,), (form,) = peer.requests, peer.forms
    assert request.method == "POST"
    assert request.path == MESSAGES_PATH
    assert request.headers["Accept"] == "application/json"
    assert form == {"To": TO, "From": FROM, "Body": "Your code is 123456 ✓", "StatusCallback": CALLBACK}
    assert result.provider_message_id.startswith("SM") and len(result.provider_message_id) == 34
    assert result.detail == "status=queued"


def test_messaging_service_replaces_from(httpserver, peer):
    backend(httpserver, from_number="", messaging_service_sid=SERVICE_SID).send(message())

    (form,) = peer.forms
    assert form["MessagingServiceSid"] == SERVICE_SID
    assert "From" not in form


def test_no_status_callback_without_a_callback_url(httpserver, peer):
    backend(httpserver, callback_url="").send(message())

    assert "StatusCallback" not in peer.forms[0]


def test_address_is_normalised_before_sending(httpserver, peer):
    backend(httpserver).send(message(address="+1 (415) 555-2671"))

    assert peer.forms[0]["To"] == "+14155552671"


def test_wrong_auth_token_is_an_account_error(httpserver, peer):
    with pytest.raises(AccountError) as info:
        backend(httpserver, auth_token=secrets.token_hex(16)).send(message())

    assert info.value.code == "20003"
    assert info.value.status == 401
    assert peer.forms == []


@pytest.mark.parametrize(("status", "code", "text", "error"), [
    (400, 21211, "The 'To' number +1415555 is not a valid phone number.", InvalidAddressError),
    (400, 21614, "'To' number is not a valid mobile number", InvalidAddressError),
    (400, 21610, "Attempt to send to unsubscribed recipient", PermanentChannelError),
    (400, 21408, "Permission to send an SMS has not been enabled for the region indicated by the 'To' number",
     PermanentChannelError),
    (400, 21606, "The From phone number +15017122661 is not a valid, SMS-capable inbound phone number or short "
                 "code for your account.", AccountError),
    (400, 21703, "The Messaging Service does not have a phone number available to send a message.", AccountError),
    (401, 20003, "Authenticate", AccountError),
    (403, 20005, "Account not active", AccountError),
    (400, 21611, "This 'From' number has exceeded the maximum number of queued messages", TransientChannelError),
    (500, 20500, "Internal Server Error", TransientChannelError),
    (503, 20503, "Service Unavailable", TransientChannelError),
    (400, 21999, "A code notifyhub does not list", PermanentChannelError),
])
def test_twilio_errors_map_to_the_right_outcome(httpserver, status, code, text, error):
    body = twilio_error(code, text, status)
    httpserver.expect_request(MESSAGES_PATH, method="POST").respond_with_response(json_response(body, status))

    with pytest.raises(error) as info:
        backend(httpserver).send(message())

    assert type(info.value) is error  # not a subclass: 21610 must not deactivate the number
    assert info.value.code == str(code)
    assert info.value.status == status
    assert text in str(info.value)
    assert json.loads(info.value.response) == body


def test_21610_is_not_a_dead_address():
    """Documented decision: an opted-out recipient can opt in again with START."""
    from channels_app.backends.twilio import ERRORS

    assert ERRORS[21610] is PermanentChannelError
    assert not issubclass(ERRORS[21610], DeadAddressError)


def test_429_honours_retry_after(httpserver):
    httpserver.expect_request(MESSAGES_PATH).respond_with_response(json_response(
        twilio_error(20429, "Too Many Requests", 429), 429, headers={"Retry-After": "7"}))

    with pytest.raises(TransientChannelError) as info:
        backend(httpserver).send(message())

    assert info.value.code == "20429"
    assert info.value.retry_after == 7


def test_5xx_without_a_json_body_is_transient(httpserver):
    httpserver.expect_request(MESSAGES_PATH).respond_with_response(
        Response("<html>502 Bad Gateway</html>", status=502, content_type="text/html"))

    with pytest.raises(TransientChannelError) as info:
        backend(httpserver).send(message())

    assert info.value.status == 502


def test_timeout_is_transient(httpserver):
    def slow(request):
        time.sleep(1.0)
        return json_response({}, 201)

    httpserver.expect_request(MESSAGES_PATH).respond_with_handler(slow)

    with pytest.raises(TransientChannelError) as info:
        backend(httpserver, timeout=0.2).send(message())

    assert info.value.code == "timeout"


def test_invalid_number_fails_before_any_request(httpserver, peer):
    with pytest.raises(InvalidAddressError) as info:
        backend(httpserver).send(message(address="4155552671"))

    assert "4155552671" in str(info.value)
    assert httpserver.log == []


@pytest.mark.parametrize(("text", "code"), [("", "no_text"), ("x" * 1601, "text_too_long")])
def test_unsendable_text_is_permanent(httpserver, peer, text, code):
    with pytest.raises(PermanentChannelError) as info:
        backend(httpserver).send(message(text=text))

    assert info.value.code == code
    assert httpserver.log == []


def test_send_many_sends_each_message_once(httpserver, peer):
    messages = [message(text=f"message {i}") for i in range(6)]

    with backend(httpserver) as b:
        outcomes = list(b.send_many(messages))

    assert sorted(m.delivery_id for m, _ in outcomes) == sorted(m.delivery_id for m in messages)
    assert all(isinstance(outcome, SendResult) for _, outcome in outcomes)
    assert len({outcome.provider_message_id for _, outcome in outcomes}) == 6
    assert sorted(form["Body"] for form in peer.forms) == sorted(f"message {i}" for i in range(6))


# --- addresses and options --------------------------------------------------------------------
@pytest.mark.parametrize(("address", "normalised"), [
    ("+14155552671", "+14155552671"), ("+1 415-555-2671", "+14155552671"), (" +8613800138000 ", "+8613800138000"),
])
def test_valid_numbers_are_normalised_to_e164(address, normalised):
    assert TwilioBackend.validate_address(address) == normalised


@pytest.mark.parametrize("address", ["4155552671", "+1415555", "+8612345678901", "not a number", ""])
def test_invalid_numbers_are_invalid_addresses_naming_the_number(address):
    with pytest.raises(InvalidAddressError) as info:
        TwilioBackend.validate_address(address)

    assert repr(address) in str(info.value)
    assert info.value.code == "invalid_phone_number"


def test_good_options_get_their_defaults(httpserver):
    validated = TwilioBackend.validate_options({"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN,
                                                "from_number": "+1 501 712 2661"})

    assert validated == {"account_sid": ACCOUNT_SID, "auth_token": AUTH_TOKEN, "from_number": FROM,
                         "messaging_service_sid": "", "api_base": "https://api.twilio.com", "timeout": 10.0}
    assert TwilioBackend.secret_fields == {"auth_token"}
    assert TwilioBackend.default_rate == "1/s"


@pytest.mark.parametrize(("overrides", "field", "says"), [
    ({"account_sid": None}, "account_sid", "required"),
    ({"auth_token": None}, "auth_token", "required"),
    ({"account_sid": "AC123"}, "account_sid", "32 hex"),
    ({"from_number": "12345"}, "from_number", "not a phone number"),
    ({"from_number": "+1415555"}, "from_number", "not a valid phone number"),
    ({"from_number": ""}, "from_number", "from_number or messaging_service_sid"),
    ({"messaging_service_sid": SERVICE_SID}, "messaging_service_sid", "not both"),
    ({"from_number": "", "messaging_service_sid": "MG1"}, "messaging_service_sid", "32 hex"),
    ({"api_base": "not a url"}, "api_base", "valid URL"),
    ({"timeout": 0}, "timeout", "greater than or equal"),
])
def test_bad_options_name_the_field(httpserver, overrides, field, says):
    with pytest.raises(ValidationError) as info:
        TwilioBackend.validate_options(options(httpserver, **overrides))

    assert set(info.value.detail) == {field}
    assert says in str(info.value.detail[field][0])


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[])
def test_private_api_base_is_refused(httpserver):
    with pytest.raises(ValidationError) as info:
        TwilioBackend.validate_options(options(httpserver, api_base="http://10.0.0.8/twilio"))

    assert set(info.value.detail) == {"api_base"}
    assert "private or reserved" in str(info.value.detail["api_base"][0])


# --- status callbacks -------------------------------------------------------------------------
def expected_signature(auth_token: str, url: str, params: dict) -> str:
    """From Twilio's "Webhooks security": take the full URL, append each POST parameter's name
    and value (sorted by name, no separators), HMAC-SHA1 with the Auth Token, base64."""
    data = url
    for name in sorted(params):
        data += name + params[name]
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode("utf-8"), hashlib.sha1).digest()).decode()


def test_expected_signature_matches_twilios_published_example():
    """The verifier above is itself checked against the example in Twilio's docs."""
    params = {"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
              "From": "+12349013030", "To": "+18005551212"}

    assert expected_signature("12345", "https://mycompany.com/myapp.php?foo=1&bar=2", params) == \
        "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def status_callback(status: str, url: str = CALLBACK, token: str = AUTH_TOKEN, signature: str | None = None,
                    **extra) -> CallbackRequest:
    params = {"AccountSid": ACCOUNT_SID, "ApiVersion": "2010-04-01", "From": FROM, "MessageSid": "SM" + "e" * 32,
              "MessageStatus": status, "SmsSid": "SM" + "e" * 32, "SmsStatus": status, "To": TO, **extra}
    if signature is None:
        signature = expected_signature(token, url, params)
    return CallbackRequest(method="POST", url=url, form=params,
                           headers={"X-Twilio-Signature": signature,
                                    "Content-Type": "application/x-www-form-urlencoded"})


def callback_backend(callback_url: str = CALLBACK, token: str = AUTH_TOKEN) -> TwilioBackend:
    return TwilioBackend(options={"account_sid": ACCOUNT_SID, "auth_token": token, "from_number": FROM},
                         account="twilio-main", callback_url=callback_url)


def replayed(signed: CallbackRequest, url: str = CALLBACK) -> CallbackRequest:
    """A genuine callback signed for ``signed.url``, replayed to ``url``."""
    return CallbackRequest(method="POST", url=url, headers=signed.headers, form=signed.form)


def test_delivered_callback_becomes_a_delivered_receipt():
    receipts = callback_backend().receipts(status_callback("delivered"))

    assert receipts == [Receipt(provider_message_id="SM" + "e" * 32, status="delivered",
                                event_id="SM" + "e" * 32 + ":delivered")]


@pytest.mark.parametrize("status", ["undelivered", "failed"])
def test_undelivered_callback_is_a_failed_receipt_with_the_error_code(status):
    (receipt,) = callback_backend().receipts(status_callback(status, ErrorCode="30003"))

    assert receipt.status == "failed"
    assert receipt.event_id == "SM" + "e" * 32 + f":{status}"
    assert "30003" in receipt.detail and "unreachable" in receipt.detail


@pytest.mark.parametrize("status", ["queued", "sending", "sent", "accepted"])
def test_progress_callbacks_give_no_receipt(status):
    assert callback_backend().receipts(status_callback(status)) == []


def test_published_example_passes_verification():
    backend = callback_backend(callback_url="", token="12345")
    request = CallbackRequest(
        method="POST", url="https://mycompany.com/myapp.php?foo=1&bar=2",
        headers={"x-twilio-signature": "0/KCTR6DLpKmkAf8muzZqo1nDgQ="},
        form={"CallSid": "CA1234567890ABCDE", "Caller": "+12349013030", "Digits": "1234",
              "From": "+12349013030", "To": "+18005551212"},
    )

    assert backend.receipts(request) == []  # verified; a call webhook carries no message status


@pytest.mark.parametrize("request_factory", [
    lambda: status_callback("delivered", signature=""),
    lambda: status_callback("delivered", signature="0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
    lambda: status_callback("delivered", token=secrets.token_hex(16)),
    lambda: replayed(status_callback("delivered", url="https://other-app.example/sms/status")),
], ids=["missing", "garbage", "other-token", "signed-for-another-url"])
def test_bad_signature_is_rejected(request_factory):
    with pytest.raises(CallbackRejected):
        callback_backend().receipts(request_factory())


def test_tampered_parameter_is_rejected():
    signed = status_callback("failed", ErrorCode="30007")
    tampered = CallbackRequest(method="POST", url=signed.url, headers=signed.headers,
                               form={**signed.form, "MessageStatus": "delivered", "SmsStatus": "delivered"})

    with pytest.raises(CallbackRejected):
        callback_backend().receipts(tampered)


def test_signature_over_the_configured_callback_url_is_accepted_behind_a_proxy():
    """Twilio signs the StatusCallback URL it was given; the hub may see another scheme/host."""
    as_seen = replayed(status_callback("delivered"), url="http://notifyhub:8000/hooks/channels/twilio-main/")

    assert callback_backend().receipts(as_seen)[0].status == "delivered"


def test_signature_with_the_default_port_is_accepted():
    as_seen = replayed(status_callback("delivered", url="https://notify.example.com:443/hooks/channels/twilio-main/"))

    assert callback_backend(callback_url="").receipts(as_seen)[0].status == "delivered"


def test_form_is_read_from_the_raw_body_when_not_decoded():
    signed = status_callback("delivered")
    raw = CallbackRequest(method="POST", url=CALLBACK, headers=signed.headers, body=urlencode(signed.form).encode())

    assert callback_backend().receipts(raw)[0].status == "delivered"


def test_receipt_response_is_2xx():
    status, _, body = callback_backend().receipt_response([])

    assert 200 <= status < 300 and body == b""
