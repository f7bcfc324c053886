"""APNs backend against a local HTTP/2 APNs (hypercorn, h2c) that checks what Apple documents:
HTTP/2 only, ``POST /3/device/<token>``, every ``apns-*`` header, and the ES256 provider
token verified with the key's public half; it answers like Apple (``200`` + ``apns-id``,
``{"reason": ...}`` errors, ``410`` with a timestamp).

Verified: the request and payload; one JWT for many sends, kept under an hour in the shared
cache; a new JWT and one retry after ``ExpiredProviderToken``; concurrent streams over one
connection; every documented error reason mapped; options and device tokens validated.
"""
import json
import time
import uuid

import pytest
import redis
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings
from rest_framework.exceptions import ValidationError

from channels_app.backends.apns import ApnsBackend
from channels_app.errors import (
    AccountError,
    DeadAddressError,
    InvalidAddressError,
    PermanentChannelError,
    TransientChannelError,
)
from channels_app.message import OutboundMessage, SendResult
from tests.channels.push_peers import ApnsAccount, ApnsPeer, pem
from tests.conftest import free_port

DEVICE = "a3f1" * 16  # 32 bytes, as iOS hands it out


@pytest.fixture
def account() -> ApnsAccount:
    return ApnsAccount()


@pytest.fixture
def apns(account):
    peer = ApnsPeer(account)
    yield peer
    peer.stop()


def options(account: ApnsAccount, peer: ApnsPeer | None = None, **extra) -> dict:
    return {"team_id": account.team_id, "key_id": account.key_id, "private_key": account.p8(),
            "bundle_id": account.bundle_id, "api_base": peer.url if peer else "", **extra}


def backend(account, peer, **extra) -> ApnsBackend:
    return ApnsBackend(options=ApnsBackend.validate_options(options(account, peer, **extra)), account="ios")


def message(address: str = DEVICE, delivery_id: str | None = None, **content) -> OutboundMessage:
    return OutboundMessage(delivery_id=delivery_id or str(uuid.uuid4()), kind="push", address=address,
                           content=content or {"title": "Order shipped", "body": "Arrives Tuesday"})


# --- the request ------------------------------------------------------------------------------
def test_alert_request_follows_apples_documentation(account, apns):
    msg = message(title="Order 1001 shipped", body="Arrives Tuesday", badge="3", sound="default",
                  collapse_key="order-1001", url="https://shop.example.com/o/1001",
                  image="https://cdn.example.com/p.png", data={"order_id": "1001", "aps": "ignored"})

    with backend(account, apns) as b:
        result = b.send(msg)

    (request,) = apns.requests
    assert request.http_version == "2"
    assert request.method == "POST"
    assert request.path == f"/3/device/{DEVICE}"
    assert request.headers["apns-topic"] == account.bundle_id
    assert request.headers["apns-push-type"] == "alert"
    assert request.headers["apns-priority"] == "10"
    assert request.headers["apns-collapse-id"] == "order-1001"
    assert request.headers["apns-id"] == msg.delivery_id.upper()
    assert "apns-expiration" not in request.headers
    assert request.jwt_header == {"alg": "ES256", "kid": account.key_id}
    assert set(request.claims) == {"iss", "iat"}
    assert request.claims["iss"] == account.team_id
    assert abs(request.claims["iat"] - time.time()) < 60
    assert request.payload == {
        "aps": {"alert": {"title": "Order 1001 shipped", "body": "Arrives Tuesday"}, "badge": 3,
                "sound": "default", "mutable-content": 1},
        "order_id": "1001", "url": "https://shop.example.com/o/1001", "image": "https://cdn.example.com/p.png",
    }
    assert result == SendResult(provider_message_id=msg.delivery_id.upper(), detail="HTTP 200")


def test_no_title_or_body_is_a_background_push(account, apns):
    backend(account, apns).send(message(data={"sync": "inbox"}))

    (request,) = apns.requests
    assert request.headers["apns-push-type"] == "background"
    assert request.headers["apns-priority"] == "5"
    assert request.payload == {"aps": {"content-available": 1}, "sync": "inbox"}


def test_delivery_id_that_is_not_a_uuid_gets_a_stable_apns_id(account, apns):
    b = backend(account, apns)
    first = b.send(message(delivery_id="delivery-42"))
    again = b.send(message(delivery_id="delivery-42"))

    assert first.provider_message_id == again.provider_message_id
    assert uuid.UUID(first.provider_message_id)
    assert [r.headers["apns-id"] for r in apns.requests] == [first.provider_message_id] * 2


@pytest.mark.parametrize("ttl", [0, 3600])
def test_ttl_sets_apns_expiration(account, apns, ttl):
    backend(account, apns, ttl=ttl).send(message())

    expiration = int(apns.requests[0].headers["apns-expiration"])
    if ttl == 0:
        assert expiration == 0  # deliver now or never
    else:
        assert abs(expiration - (time.time() + ttl)) < 60


def test_sandbox_environment_uses_apples_sandbox_host(account):
    b = ApnsBackend(options=ApnsBackend.validate_options(options(account, environment="sandbox")))
    production = ApnsBackend(options=ApnsBackend.validate_options(options(account)))

    assert b.api_base == "https://api.sandbox.push.apple.com"
    assert production.api_base == "https://api.push.apple.com"


def test_http1_only_server_is_not_spoken_to(account, httpserver):
    """APNs is HTTP/2 only; the client never falls back to HTTP/1.1."""
    httpserver.expect_request(f"/3/device/{DEVICE}").respond_with_data("", status=200)
    b = ApnsBackend(options=ApnsBackend.validate_options(
        {**options(account), "api_base": httpserver.url_for("/").rstrip("/")}))

    with pytest.raises(TransientChannelError) as info:
        b.send(message())

    assert info.value.code == "connection_error"
    assert httpserver.log == []


def test_private_api_base_is_blocked_at_send_time(account, apns):
    b = backend(account, apns)  # 127.0.0.1 was allowed when the account was saved

    only_localhost = override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=["localhost"])

    with only_localhost, pytest.raises(PermanentChannelError) as info:
        b.send(message())

    assert info.value.code == "blocked_url"
    assert apns.requests == []


# --- provider token ---------------------------------------------------------------------------
def test_one_token_and_one_connection_for_a_concurrent_batch(account):
    peer = ApnsPeer(account, delay=0.2)
    try:
        messages = [message() for _ in range(20)]
        started = time.monotonic()
        with backend(account, peer) as b:
            outcomes = list(b.send_many(messages))
        elapsed = time.monotonic() - started
    finally:
        peer.stop()

    assert sorted(m.delivery_id for m, _ in outcomes) == sorted(m.delivery_id for m in messages)
    assert all(isinstance(outcome, SendResult) for _, outcome in outcomes)
    assert len({r.headers["authorization"] for r in peer.requests}) == 1
    assert len({r.client for r in peer.requests}) == 1  # one HTTP/2 connection, many streams
    assert peer.max_in_flight > 1
    assert elapsed < 20 * 0.2


def test_token_is_shared_by_backend_instances(account, apns):
    backend(account, apns).send(message())
    backend(account, apns).send(message())

    assert len({r.headers["authorization"] for r in apns.requests}) == 1


@pytest.mark.services
def test_token_is_kept_in_the_shared_cache_for_50_minutes(account, apns):
    b = backend(account, apns)
    b.send(message())

    key = cache.make_key(f"notifyhub:token:{b.token_name}")
    ttl = redis.Redis.from_url(settings.REDIS_URL).ttl(key)

    assert 2950 < ttl <= 3000
    assert cache.get(f"notifyhub:token:{b.token_name}") == apns.requests[0].headers["authorization"].split()[1]


def test_expired_provider_token_is_replaced_and_the_send_retried(account, apns):
    b = backend(account, apns)
    b.send(message())
    old = apns.requests[0].headers["authorization"]
    apns.stale_tokens.add(old.removeprefix("bearer "))
    msg = message()

    result = b.send(msg)
    b.send(message())

    retried, after = apns.requests[1:3], apns.requests[3]
    assert [r.headers["authorization"] == old for r in retried] == [True, False]
    assert [r.headers["apns-id"] for r in retried] == [msg.delivery_id.upper()] * 2
    assert after.headers["authorization"] == retried[1].headers["authorization"]
    assert result.provider_message_id == msg.delivery_id.upper()


def test_expired_provider_token_twice_is_transient(account, apns):
    apns.expire_every_token = True

    with pytest.raises(TransientChannelError) as info:
        backend(account, apns).send(message())

    assert info.value.code == "ExpiredProviderToken"
    assert info.value.status == 403
    assert len(apns.requests) == 2


def test_token_signed_with_another_key_is_an_account_error(account, apns):
    stranger = ApnsAccount(team_id=account.team_id, key_id=account.key_id, bundle_id=account.bundle_id)

    with pytest.raises(AccountError) as info:
        backend(stranger, apns).send(message())

    assert info.value.code == "InvalidProviderToken"
    assert json.loads(info.value.response) == {"reason": "InvalidProviderToken"}


def test_topic_of_another_app_is_an_account_error(account, apns):
    with pytest.raises(AccountError) as info:
        backend(account, apns, bundle_id="com.example.other").send(message())

    assert info.value.code == "BadTopic"


# --- errors -----------------------------------------------------------------------------------
def test_unregistered_token_is_dead(account, apns):
    apns.replies[DEVICE] = (410, "Unregistered")

    with pytest.raises(DeadAddressError) as info:
        backend(account, apns).send(message())

    assert info.value.code == "Unregistered"
    assert info.value.status == 410
    body = json.loads(info.value.response)
    assert body["reason"] == "Unregistered" and isinstance(body["timestamp"], int)


@pytest.mark.parametrize(("status", "reason", "error"), [
    (410, "ExpiredToken", DeadAddressError),
    (400, "BadDeviceToken", InvalidAddressError),
    (400, "DeviceTokenNotForTopic", InvalidAddressError),
    (403, "MissingProviderToken", AccountError),
    (403, "Forbidden", AccountError),
    (400, "TopicDisallowed", AccountError),
    (429, "TooManyRequests", TransientChannelError),
    (429, "TooManyProviderTokenUpdates", TransientChannelError),
    (500, "InternalServerError", TransientChannelError),
    (503, "ServiceUnavailable", TransientChannelError),
    (503, "Shutdown", TransientChannelError),
    (400, "BadCollapseId", PermanentChannelError),
    (400, "PayloadEmpty", PermanentChannelError),
    (405, "MethodNotAllowed", PermanentChannelError),
])
def test_apns_reasons_map_to_channel_errors(account, apns, status, reason, error):
    apns.replies[DEVICE] = (status, reason)

    with pytest.raises(error) as info:
        backend(account, apns).send(message())

    assert type(info.value) is error
    assert info.value.code == reason
    assert info.value.status == status


def test_payload_too_large_is_permanent(account, apns):
    with pytest.raises(PermanentChannelError) as info:
        backend(account, apns).send(message(title="Big", data={"blob": "x" * 5000}))

    assert type(info.value) is PermanentChannelError
    assert info.value.code == "PayloadTooLarge"
    assert info.value.status == 413


def test_unreachable_apns_is_transient(account):
    b = ApnsBackend(options=ApnsBackend.validate_options(
        options(account, api_base=f"http://127.0.0.1:{free_port()}")))

    with pytest.raises(TransientChannelError) as info:
        b.send(message())

    assert info.value.code == "connection_error"


# --- options and addresses --------------------------------------------------------------------
@pytest.mark.parametrize("missing", ["team_id", "key_id", "private_key", "bundle_id"])
def test_missing_option_is_named(account, missing):
    data = options(account)
    del data[missing]

    with pytest.raises(ValidationError) as info:
        ApnsBackend.validate_options(data)

    assert list(info.value.detail) == [missing]


@pytest.mark.parametrize("key", [
    "not a key",
    "-----BEGIN PRIVATE KEY-----\nMIGTAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBHkwdwIBAQQg\n-----END PRIVATE KEY-----",
    pem(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
    pem(ec.generate_private_key(ec.SECP384R1())),
], ids=["garbage", "truncated", "rsa", "p384"])
def test_malformed_private_key_is_a_field_error(account, key):
    with pytest.raises(ValidationError) as info:
        ApnsBackend.validate_options({**options(account), "private_key": key})

    assert list(info.value.detail) == ["private_key"]


@pytest.mark.parametrize(("field", "value"), [
    ("team_id", "team"), ("key_id", "ABC"), ("bundle_id", "com example"), ("environment", "staging"),
    ("api_base", "ftp://api.push.apple.com"), ("ttl", -1),
])
def test_bad_option_is_named(account, field, value):
    with pytest.raises(ValidationError) as info:
        ApnsBackend.validate_options({**options(account), field: value})

    assert list(info.value.detail) == [field]


def test_p8_pasted_with_escaped_newlines_is_accepted(account):
    escaped = account.p8().replace("\n", "\\n")

    assert ApnsBackend.validate_options({**options(account), "private_key": escaped})


def test_device_token_validation():
    assert ApnsBackend.validate_address(f"<{DEVICE[:8].upper()} {DEVICE[8:]}>") == DEVICE
    for bad in ["", "xyz" * 22, DEVICE[:-2], DEVICE + "a"]:
        with pytest.raises(InvalidAddressError):
            ApnsBackend.validate_address(bad)


def test_malformed_device_token_is_refused_before_sending(account, apns):
    with pytest.raises(InvalidAddressError) as info:
        backend(account, apns).send(message(address="../../2/admin"))

    assert info.value.code == "invalid_token"
    assert apns.requests == []
