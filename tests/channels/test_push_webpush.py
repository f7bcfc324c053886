"""Web Push backend against a local push service that does what the RFCs require of one:
verifies the VAPID ``Authorization: vapid t=..., k=...`` header (RFC 8292: ES256 JWT with the
endpoint's origin as ``aud``, ``exp`` within 24 hours, ``sub``) and decrypts the aes128gcm
body (RFC 8291) with the subscription's private key and auth secret, as the browser would.

Verified: the decrypted payload and the TTL, Urgency, Topic and Content-Encoding headers; the
VAPID key formats operators paste; RFC 8030 answers mapped (404/410 dead, 429 with
Retry-After, 413, 400, 401, 403, 5xx, redirects not followed); options and subscriptions
validated.
"""
import json
import re
import time
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from django.test import override_settings
from rest_framework.exceptions import ValidationError
from werkzeug import Response

from channels_app.backends.webpush import WebPushBackend
from channels_app.errors import (
    AccountError,
    DeadAddressError,
    InvalidAddressError,
    PermanentChannelError,
    TransientChannelError,
)
from channels_app.message import OutboundMessage, SendResult
from tests.channels.push_peers import Browser, PushService, b64url, pem, vapid_key_pair

SUBJECT = "mailto:ops@example.com"


@pytest.fixture
def vapid():
    return vapid_key_pair()


@pytest.fixture
def service(httpserver, vapid) -> PushService:
    push_service = PushService(application_server_key=vapid[1], subject=SUBJECT)
    httpserver.expect_request(re.compile(r"^/push/.*")).respond_with_handler(push_service.handle)
    return push_service


@pytest.fixture
def browser(service, httpserver) -> Browser:
    return service.register(Browser(endpoint=httpserver.url_for(f"/push/{uuid.uuid4().hex}")))


def backend(key, **options) -> WebPushBackend:
    return WebPushBackend(options=WebPushBackend.validate_options(
        {"vapid_private_key": pem(key), "vapid_subject": SUBJECT, **options}), account="web")


def message(address: str, **content) -> OutboundMessage:
    return OutboundMessage(delivery_id=str(uuid.uuid4()), kind="push", address=address,
                           content=content or {"title": "Order shipped", "body": "Arrives Tuesday"})


# --- the request ------------------------------------------------------------------------------
def test_browser_decrypts_the_payload_and_the_push_service_verifies_vapid(service, browser, vapid, httpserver):
    msg = message(browser.address(), title="Order 1001 shipped", body="Arrives Tuesday ✓",
                  url="https://shop.example.com/o/1001", image="https://cdn.example.com/p.png",
                  data={"order_id": "1001"}, collapse_key="order-1001")

    with backend(vapid[0]) as b:
        result = b.send(msg)

    (received,) = service.received
    assert received["payload"] == {
        "title": "Order 1001 shipped", "body": "Arrives Tuesday ✓", "url": "https://shop.example.com/o/1001",
        "image": "https://cdn.example.com/p.png", "data": {"order_id": "1001"}, "tag": "order-1001",
    }
    headers = received["headers"]
    assert headers["Content-Encoding"] == "aes128gcm"
    assert headers["Ttl"] == "86400"
    assert headers["Urgency"] == "normal"
    assert headers["Topic"] == "order-1001"
    origin = httpserver.url_for("/").rstrip("/")
    assert received["claims"]["aud"] == origin
    assert received["claims"]["sub"] == SUBJECT
    assert time.time() < received["claims"]["exp"] <= time.time() + 24 * 3600
    assert result.provider_message_id.startswith(f"{origin}/m/")
    assert result.detail == "HTTP 201"


def test_ttl_and_urgency_options_are_sent(service, browser, vapid):
    backend(vapid[0], ttl=0, urgency="high").send(message(browser.address()))

    headers = service.received[0]["headers"]
    assert (headers["Ttl"], headers["Urgency"]) == ("0", "high")


def test_long_collapse_key_becomes_a_valid_topic(service, browser, vapid):
    backend(vapid[0]).send(message(browser.address(), title="x", collapse_key="orders/1001 status: shipped!"))

    topic = service.received[0]["headers"]["Topic"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", topic)


def raw_private_key(key) -> str:
    """The base64url 32-byte form printed by ``web-push generate-vapid-keys``."""
    return b64url(key.private_numbers().private_value.to_bytes(32, "big"))


def der_private_key(key) -> str:
    return b64url(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))


def sec1_pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode()


@pytest.mark.parametrize("form", [raw_private_key, der_private_key, sec1_pem])
def test_vapid_key_formats(service, browser, vapid, form):
    b = WebPushBackend(options=WebPushBackend.validate_options(
        {"vapid_private_key": form(vapid[0]), "vapid_subject": SUBJECT}))

    assert isinstance(b.send(message(browser.address())), SendResult)
    assert len(service.received) == 1


def test_https_subject_with_a_path_is_accepted(httpserver, vapid, browser):
    service = PushService(application_server_key=vapid[1], subject="https://example.com/contact")
    service.register(browser)
    httpserver.clear()
    httpserver.expect_request(re.compile(r"^/push/.*")).respond_with_handler(service.handle)

    backend(vapid[0], vapid_subject="https://example.com/contact").send(message(browser.address()))

    assert service.received[0]["claims"]["sub"] == "https://example.com/contact"


def test_batch_reaches_every_browser(threaded_httpserver, vapid):
    service = PushService(application_server_key=vapid[1], subject=SUBJECT)
    threaded_httpserver.expect_request(re.compile(r"^/push/.*")).respond_with_handler(service.handle)
    browsers = [service.register(Browser(endpoint=threaded_httpserver.url_for(f"/push/{i}"))) for i in range(8)]

    with backend(vapid[0]) as b:
        outcomes = list(b.send_many([message(br.address(), title=f"to {i}") for i, br in enumerate(browsers)]))

    assert all(isinstance(outcome, SendResult) for _, outcome in outcomes)
    assert sorted(r["payload"]["title"] for r in service.received) == sorted(f"to {i}" for i in range(8))


# --- answers ----------------------------------------------------------------------------------
def test_subscription_of_another_vapid_key_is_refused(service, browser):
    other, _ = vapid_key_pair()

    with pytest.raises(InvalidAddressError) as info:
        backend(other).send(message(browser.address()))

    assert info.value.code == "vapid_key_mismatch"
    assert info.value.status == 403
    assert service.received == []


@pytest.mark.parametrize(("status", "headers", "error", "code", "retry_after"), [
    (404, {}, DeadAddressError, "subscription_gone", None),
    (410, {}, DeadAddressError, "subscription_gone", None),
    (429, {"Retry-After": "120"}, TransientChannelError, "rate_limited", 120),
    (413, {}, PermanentChannelError, "payload_too_large", None),
    (400, {}, PermanentChannelError, "", None),
    (401, {}, AccountError, "vapid_unauthorized", None),
    (500, {}, TransientChannelError, "", None),
    (502, {"Retry-After": "30"}, TransientChannelError, "", 30),
    (503, {}, TransientChannelError, "", None),
    (301, {"Location": "https://elsewhere.example/push"}, PermanentChannelError, "", None),
])
def test_push_service_answers_map_to_channel_errors(httpserver, vapid, status, headers, error, code, retry_after):
    httpserver.expect_request("/gone").respond_with_response(Response("push service says no", status=status,
                                                                      headers=headers))
    address = Browser(endpoint=httpserver.url_for("/gone")).address()

    with pytest.raises(error) as info:
        backend(vapid[0]).send(message(address))

    assert type(info.value) is error
    assert info.value.status == status
    assert info.value.code == code
    assert getattr(info.value, "retry_after", None) == retry_after
    assert info.value.response == "push service says no"
    assert len(httpserver.log) == 1  # a redirect is not followed


@pytest.mark.parametrize("status", [200, 202])
def test_other_success_statuses(httpserver, vapid, status):
    httpserver.expect_request("/ok").respond_with_response(Response(status=status))

    result = backend(vapid[0]).send(message(Browser(endpoint=httpserver.url_for("/ok")).address()))

    assert result == SendResult(provider_message_id="", detail=f"HTTP {status}")


def test_payload_over_the_web_push_limit_is_refused_before_sending(service, browser, vapid):
    with pytest.raises(PermanentChannelError) as info:
        backend(vapid[0]).send(message(browser.address(), title="Big", data={"blob": "x" * 4000}))

    assert info.value.code == "payload_too_large"
    assert service.received == []


def test_blocked_endpoint_is_an_invalid_address(service, browser, vapid, httpserver):
    b = backend(vapid[0])

    with override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[]), pytest.raises(InvalidAddressError) as info:
        b.send(message(browser.address()))

    assert info.value.code == "blocked_url"
    assert httpserver.log == []


def test_unreachable_push_service_is_transient(vapid):
    from tests.conftest import free_port

    address = Browser(endpoint=f"http://127.0.0.1:{free_port()}/push/x").address()

    with pytest.raises(TransientChannelError) as info:
        backend(vapid[0]).send(message(address))

    assert info.value.code == "connection_error"


# --- options and subscriptions ----------------------------------------------------------------
@pytest.mark.parametrize("missing", ["vapid_private_key", "vapid_subject"])
def test_missing_option_is_named(vapid, missing):
    data = {"vapid_private_key": pem(vapid[0]), "vapid_subject": SUBJECT}
    del data[missing]

    with pytest.raises(ValidationError) as info:
        WebPushBackend.validate_options(data)

    assert list(info.value.detail) == [missing]


@pytest.mark.parametrize("key", [
    "not a key",
    "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
    b64url(b"\x01" * 31),
    pem(ec.generate_private_key(ec.SECP384R1())),
], ids=["garbage", "bad-pem", "short-raw", "p384"])
def test_malformed_vapid_key_is_a_field_error(key):
    with pytest.raises(ValidationError) as info:
        WebPushBackend.validate_options({"vapid_private_key": key, "vapid_subject": SUBJECT})

    assert list(info.value.detail) == ["vapid_private_key"]


@pytest.mark.parametrize(("field", "value"), [
    ("vapid_subject", "ops@example.com"), ("vapid_subject", "http://example.com"),
    ("vapid_subject", "mailto:not-an-address"), ("urgency", "urgent"), ("ttl", -1),
])
def test_bad_option_is_named(vapid, field, value):
    with pytest.raises(ValidationError) as info:
        WebPushBackend.validate_options({"vapid_private_key": pem(vapid[0]), "vapid_subject": SUBJECT, field: value})

    assert list(info.value.detail) == [field]


def test_subscription_is_normalised():
    browser = Browser(endpoint="https://fcm.googleapis.com/fcm/send/abc:def")
    subscription = browser.subscription()

    normalised = WebPushBackend.validate_address(json.dumps(subscription, indent=2))

    assert json.loads(normalised) == {"endpoint": subscription["endpoint"], "keys": subscription["keys"]}


def broken(**changes) -> str:
    subscription = Browser(endpoint="https://updates.push.services.mozilla.com/wpush/v2/gAAAA").subscription()
    for name, value in changes.items():
        if name in ("p256dh", "auth"):
            subscription["keys"][name] = value
        else:
            subscription[name] = value
    return json.dumps(subscription)


@pytest.mark.parametrize("address", [
    "not json",
    json.dumps({"endpoint": "https://push.example.com/x"}),
    broken(endpoint="ftp://push.example.com/x"),
    broken(endpoint="not a url"),
    broken(p256dh="AAAA"),
    broken(p256dh=b64url(b"\x04" + b"\x00" * 64)),  # not a point on the curve
    broken(auth=b64url(b"\x00" * 8)),
    broken(auth=None),
], ids=["not-json", "no-keys", "ftp", "not-url", "short-p256dh", "off-curve", "short-auth", "no-auth"])
def test_malformed_subscription_is_an_invalid_address(address):
    with pytest.raises(InvalidAddressError):
        WebPushBackend.validate_address(address)


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[])
def test_private_endpoint_is_an_invalid_address():
    with pytest.raises(InvalidAddressError) as info:
        WebPushBackend.validate_address(broken(endpoint="http://10.0.0.7/push/x"))

    assert info.value.code == "blocked_url"
