"""anymail backends: one registered per ESP module anymail ships; anymail.postmark against a
local HTTP server speaking Postmark's API (POST /email, X-Postmark-Server-Token, JSON body),
with its success, 422 error-code and 5xx answers mapped to results and channel errors."""
import json
import pkgutil
import uuid

import anymail.backends
import pytest
from django.test import override_settings
from rest_framework.exceptions import ValidationError
from werkzeug import Response

from channels_app.errors import InvalidAddressError, PermanentChannelError, TransientChannelError
from channels_app.message import OutboundMessage
from channels_app.registry import all_backends, backend_class

#: modules in anymail.backends that are not an ESP, or a deprecated alias of one (sendinblue -> brevo)
NOT_AN_ESP = {"base", "base_requests", "console", "test", "sendinblue"}


def test_every_anymail_esp_is_a_registered_email_backend():
    esps = {m.name for m in pkgutil.iter_modules(anymail.backends.__path__)} - NOT_AN_ESP
    assert {"postmark", "mailgun", "sendgrid", "amazon_ses", "brevo"} <= esps

    backends = all_backends()
    for esp in esps:
        cls = backends[f"anymail.{esp}"]
        assert cls.kind == "email"
        assert cls.esp == esp
        assert "esp_credentials" in cls.secret_fields


def postmark(api_url: str, token: str = "tok"):
    cls = backend_class("anymail.postmark")
    return cls(options=cls.validate_options({
        "from_email": "hub@example.com", "esp_settings": {"api_url": api_url},
        "esp_credentials": {"server_token": token}}))


def message(address: str = "ada@example.com") -> OutboundMessage:
    return OutboundMessage(
        delivery_id=str(uuid.uuid4()), kind="email", address=address,
        content={"subject": "Your code ✓", "text": "Code 1234.", "html": "<p>Code <b>1234</b>.</p>"},
    )


def postmark_api(expected_token: str, answer: tuple[int, dict], seen: list):
    """Postmark's /email endpoint: token checked, body recorded, the given answer returned."""

    def handle(request):
        if request.headers.get("X-Postmark-Server-Token") != expected_token:
            return Response(json.dumps({"ErrorCode": 10, "Message": "No Account or Server API tokens"}),
                            status=401, content_type="application/json")
        seen.append(json.loads(request.get_data()))
        status, body = answer
        return Response(json.dumps(body), status=status, content_type="application/json")

    return handle


def test_postmark_send(httpserver):
    seen = []
    msg = message()
    httpserver.expect_request("/email", method="POST", headers={"Accept": "application/json"}).respond_with_handler(
        postmark_api("tok", (200, {"To": msg.address, "SubmittedAt": "2024-01-01T00:00:00Z",
                                   "MessageID": "abc", "ErrorCode": 0, "Message": "OK"}), seen))

    with postmark(httpserver.url_for("/")) as b:
        result = b.send(msg)

    assert result.provider_message_id == "abc"
    (body,) = seen
    assert body["From"] == "hub@example.com"
    assert body["To"] == "ada@example.com"
    assert body["Subject"] == "Your code ✓"
    assert body["TextBody"] == "Code 1234."
    assert body["HtmlBody"] == "<p>Code <b>1234</b>.</p>"
    assert {"Name": "X-Notifyhub-Delivery", "Value": msg.delivery_id} in body["Headers"]
    assert body["Metadata"] == {"notifyhub_delivery": msg.delivery_id}


def test_postmark_wrong_token_is_permanent(httpserver):
    httpserver.expect_request("/email").respond_with_handler(postmark_api("tok", (200, {}), []))

    with pytest.raises(PermanentChannelError) as info:
        postmark(httpserver.url_for("/"), token="wrong").send(message())

    assert info.value.status == 401


def test_postmark_invalid_request_is_permanent_with_the_body(httpserver):
    httpserver.expect_request("/email").respond_with_handler(
        postmark_api("tok", (422, {"ErrorCode": 300, "Message": "Invalid email request"}), []))

    with pytest.raises(PermanentChannelError) as info:
        postmark(httpserver.url_for("/")).send(message())

    assert not isinstance(info.value, TransientChannelError)
    assert info.value.status == 422
    assert json.loads(info.value.response) == {"ErrorCode": 300, "Message": "Invalid email request"}


def test_postmark_inactive_recipient_is_an_invalid_address(httpserver):
    answer = {"ErrorCode": 406, "Message": "You tried to send to a recipient that has been marked as inactive.\n"
              "Found inactive addresses: ada@example.com.\nInactive recipients are ones that have generated "
              "a hard bounce or a spam complaint."}
    httpserver.expect_request("/email").respond_with_handler(postmark_api("tok", (422, answer), []))

    with pytest.raises(InvalidAddressError):
        postmark(httpserver.url_for("/")).send(message())


@pytest.mark.parametrize("status", [500, 503])
def test_postmark_server_error_is_transient(httpserver, status):
    httpserver.expect_request("/email").respond_with_data("upstream down", status=status)

    with pytest.raises(TransientChannelError) as info:
        postmark(httpserver.url_for("/")).send(message())

    assert info.value.status == status
    assert info.value.response == "upstream down"


def test_postmark_unreachable_is_transient():
    from tests.conftest import free_port

    with pytest.raises(TransientChannelError):
        postmark(f"http://127.0.0.1:{free_port()}/").send(message())


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[])
def test_private_api_url_is_refused_in_options():
    cls = backend_class("anymail.postmark")

    with pytest.raises(ValidationError) as info:
        cls.validate_options({"from_email": "hub@example.com", "esp_settings": {"api_url": "http://10.0.0.1/"}})

    assert set(info.value.detail) == {"esp_settings"}
