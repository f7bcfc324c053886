"""Webhook backend against a real HTTP receiver (pytest-httpserver).

Verified: the Standard Webhooks headers and a signature the receiver recomputes from the spec;
the body shape; a stable webhook-id across resends; status mapping (2xx ok, 408/429/5xx
transient with Retry-After in seconds or as an HTTP date, other 4xx permanent with the body
recorded, redirects not followed); timeouts; the recipient URL overriding the account URL;
option validation; and concurrent batches.
"""
import json
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from django.test import override_settings
from rest_framework.exceptions import ValidationError
from werkzeug import Response

from channels_app.backends.webhook import WebhookBackend
from channels_app.errors import InvalidAddressError, PermanentChannelError, TransientChannelError
from channels_app.message import OutboundMessage, SendResult
from tests.channels.conftest import new_webhook_secret, webhook_receiver

PAYLOAD = {"event": "code", "name": "Ada", "code": "1234", "note": "ünïcode ✓"}


def backend(secret: str, **options) -> WebhookBackend:
    return WebhookBackend(options=WebhookBackend.validate_options({"signing_secret": secret, **options}))


def message(address: str = "", delivery_id: str | None = None, payload=None) -> OutboundMessage:
    return OutboundMessage(
        delivery_id=delivery_id or str(uuid.uuid4()), kind="webhook", address=address,
        content={"payload": PAYLOAD if payload is None else payload},
        metadata={"template": "order.shipped"},
    )


@pytest.fixture
def secret():
    return new_webhook_secret()


def test_signed_request_matches_the_spec(httpserver, secret):
    received = []
    httpserver.expect_request("/hook", method="POST").respond_with_handler(webhook_receiver(secret, received))
    msg = message(httpserver.url_for("/hook"))

    with backend(secret) as b:
        result = b.send(msg)

    assert result == SendResult(provider_message_id=f"msg_{msg.delivery_id}", detail="HTTP 204")
    (request,) = received
    assert request.headers["webhook-id"] == f"msg_{msg.delivery_id}"
    assert request.headers["Content-Type"] == "application/json"
    body = json.loads(request.get_data())
    assert set(body) == {"type", "timestamp", "data"}
    assert body["type"] == "order.shipped"
    assert body["data"] == PAYLOAD
    sent_at = datetime.fromisoformat(body["timestamp"].replace("Z", "+00:00"))
    assert int(sent_at.timestamp()) == int(request.headers["webhook-timestamp"])


def test_signature_with_another_secret_is_refused_by_the_receiver(httpserver, secret):
    """The receiver's check is real: signing with a different secret does not pass it."""
    httpserver.expect_request("/hook").respond_with_handler(webhook_receiver(secret, []))

    with pytest.raises(PermanentChannelError) as info:
        backend(new_webhook_secret()).send(message(httpserver.url_for("/hook")))

    assert info.value.status == 401
    assert "no valid v1 signature" in info.value.response


def test_resend_of_a_delivery_keeps_its_webhook_id(httpserver, secret):
    received = []
    httpserver.expect_request("/hook").respond_with_handler(webhook_receiver(secret, received))
    first = message(httpserver.url_for("/hook"))
    other = message(httpserver.url_for("/hook"))

    b = backend(secret)
    b.send(first)
    b.send(first)
    b.send(other)

    ids = [r.headers["webhook-id"] for r in received]
    assert ids[0] == ids[1] == f"msg_{first.delivery_id}"
    assert ids[2] == f"msg_{other.delivery_id}" != ids[0]


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_success(httpserver, secret, status):
    httpserver.expect_request("/hook").respond_with_handler(webhook_receiver(secret, [], status=status))

    assert backend(secret).send(message(httpserver.url_for("/hook"))).detail == f"HTTP {status}"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_transient_with_retry_after_seconds(httpserver, secret, status):
    httpserver.expect_request("/hook").respond_with_response(
        Response("slow down", status=status, headers={"Retry-After": "120"}))

    with pytest.raises(TransientChannelError) as info:
        backend(secret).send(message(httpserver.url_for("/hook")))

    assert info.value.status == status
    assert info.value.retry_after == 120
    assert info.value.response == "slow down"


def test_retry_after_as_http_date(httpserver, secret):
    when = datetime.now(UTC) + timedelta(seconds=90)
    httpserver.expect_request("/hook").respond_with_response(
        Response(status=503, headers={"Retry-After": format_datetime(when, usegmt=True)}))

    with pytest.raises(TransientChannelError) as info:
        backend(secret).send(message(httpserver.url_for("/hook")))

    assert 80 <= info.value.retry_after <= 90


def test_retry_after_as_http_date_with_unknown_zone(httpserver, secret):
    """RFC 5322 "-0000" dates parse as naive datetimes; they must not crash the send."""
    when = datetime.now(UTC) + timedelta(seconds=60)
    httpserver.expect_request("/hook").respond_with_response(
        Response(status=429, headers={"Retry-After": when.strftime("%a, %d %b %Y %H:%M:%S -0000")}))

    with pytest.raises(TransientChannelError) as info:
        backend(secret).send(message(httpserver.url_for("/hook")))

    assert 50 <= info.value.retry_after <= 60


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_other_4xx_is_permanent_and_keeps_the_body(httpserver, secret, status):
    httpserver.expect_request("/hook").respond_with_json({"error": "unknown subscriber"}, status=status)

    with pytest.raises(PermanentChannelError) as info:
        backend(secret).send(message(httpserver.url_for("/hook")))

    assert not isinstance(info.value, TransientChannelError)
    assert info.value.status == status
    assert json.loads(info.value.response) == {"error": "unknown subscriber"}


def test_redirect_is_not_followed(httpserver, secret):
    elsewhere = httpserver.url_for("/elsewhere")
    httpserver.expect_request("/hook").respond_with_response(Response(status=302, headers={"Location": elsewhere}))
    httpserver.expect_request("/elsewhere").respond_with_handler(webhook_receiver(secret, []))

    with pytest.raises(PermanentChannelError) as info:
        backend(secret).send(message(httpserver.url_for("/hook")))

    assert info.value.status == 302
    assert elsewhere in str(info.value)
    assert [request.path for request, _ in httpserver.log] == ["/hook"]


def test_timeout_is_transient(httpserver, secret):
    def slow(request):
        time.sleep(1.0)
        return Response(status=204)

    httpserver.expect_request("/hook").respond_with_handler(slow)

    started = time.monotonic()
    with pytest.raises(TransientChannelError) as info:
        backend(secret, timeout=0.2).send(message(httpserver.url_for("/hook")))

    assert info.value.code == "timeout"
    assert time.monotonic() - started < 0.9


def test_connection_refused_is_transient(secret):
    from tests.conftest import free_port

    with pytest.raises(TransientChannelError) as info:
        backend(secret).send(message(f"http://127.0.0.1:{free_port()}/hook"))

    assert info.value.code == "connection_error"


def test_recipient_url_overrides_the_account_url(httpserver, secret):
    received = []
    httpserver.expect_request("/recipient").respond_with_handler(webhook_receiver(secret, received))
    httpserver.expect_request("/account").respond_with_handler(webhook_receiver(secret, received))
    b = backend(secret, url=httpserver.url_for("/account"))

    b.send(message(httpserver.url_for("/recipient")))
    b.send(message(""))

    assert [r.path for r in received] == ["/recipient", "/account"]


def test_no_url_at_all_is_permanent(secret):
    with pytest.raises(PermanentChannelError) as info:
        backend(secret).send(message(""))

    assert info.value.code == "no_url"


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[])
def test_send_to_a_private_address_is_blocked_before_connecting(httpserver, secret):
    httpserver.expect_request("/hook").respond_with_handler(webhook_receiver(secret, []))
    b = WebhookBackend(options={"signing_secret": secret, "timeout": 5})

    with pytest.raises(PermanentChannelError) as info:
        b.send(message(httpserver.url_for("/hook")))

    assert info.value.code == "blocked_url"
    assert httpserver.log == []


# --- options and addresses --------------------------------------------------------------------
@pytest.mark.parametrize(("secret", "says"), [
    (None, "required"),
    ("c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXg=", "whsec_"),
    ("whsec_not base64!!", "base64"),
    ("whsec_c2hvcnQ=", "24 to 64 bytes"),
])
def test_bad_signing_secret_is_named(secret, says):
    data = {"url": "https://hooks.example.com/in"}
    if secret is not None:
        data["signing_secret"] = secret

    with pytest.raises(ValidationError) as info:
        WebhookBackend.validate_options(data)

    assert set(info.value.detail) == {"signing_secret"}
    assert says in str(info.value.detail["signing_secret"][0])


def test_good_options_are_accepted():
    secret = new_webhook_secret()

    options = WebhookBackend.validate_options({"url": "https://hooks.example.com/in", "signing_secret": secret})

    assert options == {"url": "https://hooks.example.com/in", "signing_secret": secret, "timeout": 10.0}


PRIVATE_URLS = ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/hook",
                "http://169.254.169.254/latest/meta-data", "http://[::1]/hook"]


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[])
@pytest.mark.parametrize("url", PRIVATE_URLS)
def test_private_url_is_refused_when_not_allowed(url):
    with pytest.raises(ValidationError) as info:
        WebhookBackend.validate_options({"url": url, "signing_secret": new_webhook_secret()})

    assert set(info.value.detail) == {"url"}
    assert "private or reserved" in str(info.value.detail["url"][0])


def test_loopback_is_allowed_by_the_test_settings():
    """The counterpart of the test above: the same URL passes when its host is allowed."""
    options = WebhookBackend.validate_options({"url": "http://127.0.0.1:8080/hook",
                                               "signing_secret": new_webhook_secret()})

    assert options["url"] == "http://127.0.0.1:8080/hook"


@pytest.mark.parametrize("address", ["not a url", "ftp://example.com/x", "https://"])
def test_invalid_recipient_url_is_an_invalid_address(address):
    with pytest.raises(InvalidAddressError):
        WebhookBackend.validate_address(address)


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[])
def test_private_recipient_url_is_an_invalid_address():
    with pytest.raises(InvalidAddressError):
        WebhookBackend.validate_address("http://10.0.0.7/hook")


# --- batches ----------------------------------------------------------------------------------
def test_send_many_runs_concurrently_and_yields_every_outcome_once(threaded_httpserver, secret):
    """20 messages: 15 accepted, 5 answered 503. Handlers wait for each other in groups of
    four, which only completes if the backend really has several requests in flight."""
    server = threaded_httpserver
    barrier = threading.Barrier(4)
    received = []
    accept = webhook_receiver(secret, received)

    def handle(request):
        try:
            barrier.wait(timeout=5)
        except threading.BrokenBarrierError:
            return Response("requests arrived one at a time", status=400)
        if request.path == "/busy":
            return Response(status=503)
        return accept(request)

    server.expect_request("/ok").respond_with_handler(handle)
    server.expect_request("/busy").respond_with_handler(handle)
    messages = [message(server.url_for("/busy" if i % 4 == 0 else "/ok")) for i in range(20)]

    with backend(secret) as b:
        outcomes = list(b.send_many(messages))

    assert sorted(m.delivery_id for m, _ in outcomes) == sorted(m.delivery_id for m in messages)
    by_id = {m.delivery_id: outcome for m, outcome in outcomes}
    for m in messages:
        expected = TransientChannelError if m.address.endswith("/busy") else SendResult
        assert isinstance(by_id[m.delivery_id], expected), by_id[m.delivery_id]
    assert len(received) == 15
