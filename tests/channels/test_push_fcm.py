"""FCM HTTP v1 backend against a local Google: an OAuth token endpoint that verifies the
RS256 JWT-bearer grant with the service account's public key, and an FCM send endpoint that
checks the bearer token and the v1 ``Message`` shape and answers with FCM's real bodies.

Verified: the request (path, headers, exact body); one access token for many sends, shared by
two separate worker processes through Redis, fetched again once after a 401 UNAUTHENTICATED;
every documented FCM error code mapped; option and address validation.
"""
import json
import subprocess
import sys
import uuid

import pytest
import redis
from cryptography.hazmat.primitives.asymmetric import ec
from django.conf import settings
from django.core.cache import cache
from django.test import override_settings
from rest_framework.exceptions import ValidationError

from channels_app.backends.fcm import FcmBackend
from channels_app.errors import (
    AccountError,
    DeadAddressError,
    InvalidAddressError,
    PermanentChannelError,
    TransientChannelError,
)
from channels_app.message import OutboundMessage, SendResult
from tests.channels.push_peers import FCM_SENDER_SCRIPT, GooglePeer, ServiceAccount, google_error, pem
from tests.conftest import ROOT, worker_env

TOKEN = "dXJ0b2tlbi0x:APA91bH" + "a1B2c3D4e5F6g7H8i9J0" * 7


def serve_google(server) -> GooglePeer:
    peer = GooglePeer(ServiceAccount(token_uri=server.url_for("/token")))
    server.expect_request("/token").respond_with_handler(peer.token_endpoint)
    server.expect_request(peer.send_path()).respond_with_handler(peer.fcm_send)
    return peer


@pytest.fixture
def google(httpserver) -> GooglePeer:
    return serve_google(httpserver)


def fcm_options(peer: GooglePeer, server) -> dict:
    return {"service_account_json": peer.account.json(), "api_base": server.url_for("/")}


def backend(peer: GooglePeer, server, **options) -> FcmBackend:
    return FcmBackend(options=FcmBackend.validate_options({**fcm_options(peer, server), **options}),
                      account="fcm-main")


def message(address: str = TOKEN, **content) -> OutboundMessage:
    return OutboundMessage(delivery_id=str(uuid.uuid4()), kind="push", address=address,
                           content=content or {"title": "Order shipped", "body": "Your parcel is on its way"})


# --- the request ------------------------------------------------------------------------------
def test_send_follows_the_v1_api(google, httpserver):
    msg = message(title="Order 1001 shipped", body="Arrives Tuesday", image="https://cdn.example.com/p.png",
                  url="https://shop.example.com/orders/1001", data={"order_id": "1001", "items": 3},
                  sound="default", badge="2", collapse_key="order-1001")

    with backend(google, httpserver) as b:
        result = b.send(msg)

    (sent,) = google.sends
    token = sorted(google.valid_tokens)[0]
    assert sent["authorization"] == f"Bearer {token}"
    assert sent["headers"]["Content-Type"] == "application/json"
    assert sent["body"] == {"message": {
        "token": TOKEN,
        "notification": {"title": "Order 1001 shipped", "body": "Arrives Tuesday",
                         "image": "https://cdn.example.com/p.png"},
        "data": {"order_id": "1001", "items": "3", "url": "https://shop.example.com/orders/1001"},
        "android": {"collapse_key": "order-1001", "notification": {"sound": "default", "notification_count": 2}},
        "apns": {"headers": {"apns-collapse-id": "order-1001"},
                 "payload": {"aps": {"sound": "default", "badge": 2, "mutable-content": 1}},
                 "fcm_options": {"image": "https://cdn.example.com/p.png"}},
        "webpush": {"fcm_options": {"link": "https://shop.example.com/orders/1001"}},
    }}
    assert result.provider_message_id.startswith("projects/notifyhub-test/messages/0:")
    assert result == SendResult(provider_message_id=result.provider_message_id, detail="HTTP 200")
    assert google.token_calls == 1


def test_minimal_message_sends_only_the_notification(google, httpserver):
    backend(google, httpserver).send(message(title="Hi"))

    assert google.sends[0]["body"] == {"message": {"token": TOKEN, "notification": {"title": "Hi"}}}


def test_project_id_option_overrides_the_key(google, httpserver):
    google.project_id = "other-project"
    httpserver.expect_request(google.send_path()).respond_with_handler(google.fcm_send)
    b = backend(google, httpserver, project_id="other-project")

    assert b.send(message()).provider_message_id.startswith("projects/other-project/messages/")


def test_non_numeric_badge_is_refused_before_sending(google, httpserver):
    with pytest.raises(PermanentChannelError) as info:
        backend(google, httpserver).send(message(title="x", badge="lots"))

    assert info.value.code == "invalid_content"
    assert google.sends == [] and google.token_calls == 0


# --- the access token -------------------------------------------------------------------------
def test_many_sends_use_one_access_token(google, httpserver):
    with backend(google, httpserver) as b:
        for _ in range(5):
            b.send(message())
    backend(google, httpserver).send(message())  # another instance, e.g. the next batch

    assert google.token_calls == 1
    assert len({s["authorization"] for s in google.sends}) == 1
    assert len(google.sends) == 6


def test_concurrent_batch_fetches_one_token(threaded_httpserver):
    peer = serve_google(threaded_httpserver)

    with backend(peer, threaded_httpserver) as b:
        outcomes = list(b.send_many([message() for _ in range(20)]))

    assert all(isinstance(outcome, SendResult) for _, outcome in outcomes)
    assert peer.token_calls == 1
    assert len(peer.sends) == 20


def test_401_unauthenticated_fetches_a_new_token_and_retries_once(google, httpserver):
    b = backend(google, httpserver)
    b.send(message())
    old = google.sends[0]["authorization"]
    google.revoke_all()  # the token was revoked or expired early

    result = b.send(message())

    assert google.refused == [old]
    assert google.token_calls == 2
    assert google.sends[-1]["authorization"] != old
    assert result.provider_message_id
    b.send(message())
    assert google.token_calls == 2


def test_401_with_a_fresh_token_too_is_an_account_error(google, httpserver):
    google.refuse_every_token = True

    with pytest.raises(AccountError) as info:
        backend(google, httpserver).send(message())

    assert info.value.code == "UNAUTHENTICATED"
    assert info.value.status == 401
    assert google.token_calls == 2  # one retry with a fresh token, no loop
    assert len(google.refused) == 2


def test_token_endpoint_refusing_the_key_is_an_account_error(google, httpserver):
    """A key the token endpoint cannot verify (deleted or rotated key) gets invalid_grant."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = ServiceAccount(token_uri=google.account.token_uri,
                           key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
                           key_id=google.account.key_id)
    b = FcmBackend(options=FcmBackend.validate_options(
        {"service_account_json": other.json(), "api_base": httpserver.url_for("/")}))

    with pytest.raises(AccountError) as info:
        b.send(message())

    assert info.value.code == "token_refresh_refused"
    assert "invalid_grant" in str(info.value)
    assert google.sends == []


def test_unreachable_token_endpoint_is_transient(httpserver):
    from tests.conftest import free_port

    account = ServiceAccount(token_uri=f"http://127.0.0.1:{free_port()}/token")
    b = FcmBackend(options=FcmBackend.validate_options(
        {"service_account_json": account.json(), "api_base": httpserver.url_for("/")}))

    with pytest.raises(TransientChannelError) as info:
        b.send(message())

    assert info.value.code == "token_unreachable"
    assert httpserver.log == []


@pytest.mark.services
def test_token_cache_expires_before_the_token(google, httpserver):
    """Kept for expires_in (3599 s) minus the 5-minute margin, in the shared cache."""
    b = backend(google, httpserver)
    b.send(message())

    ttl = redis.Redis.from_url(settings.REDIS_URL).ttl(cache.make_key(f"notifyhub:token:{b.token_name}"))

    assert 3200 < ttl <= 3299


def run_senders(peer: GooglePeer, server, count: int = 10) -> list[dict]:
    """Two separate OS processes, each building the backend and sending ``count`` messages."""
    env = worker_env(
        DJANGO_SETTINGS_MODULE="notifyhub.settings", SECRET_KEY=settings.SECRET_KEY,
        NOTIFYHUB_SECRETS_KEY=",".join(settings.NOTIFYHUB_SECRETS_KEYS),
        NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS="127.0.0.1,localhost",
        FCM_TEST_OPTIONS=json.dumps(fcm_options(peer, server)),
    )
    procs = [subprocess.Popen([sys.executable, "-c", FCM_SENDER_SCRIPT, str(count), TOKEN], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


@pytest.mark.services
def test_two_processes_share_one_token_and_refetch_once_after_401(threaded_httpserver):
    peer = serve_google(threaded_httpserver)

    first = run_senders(peer, threaded_httpserver)

    assert first[0]["pid"] != first[1]["pid"]
    assert [len(r["ids"]) for r in first] == [10, 10]
    assert peer.token_calls == 1
    assert len(peer.sends) == 20
    assert len({s["authorization"] for s in peer.sends}) == 1
    assert {s["body"]["message"]["notification"]["title"] for s in peer.sends} == {
        f"Hello {r['pid']}" for r in first}
    old = peer.sends[0]["authorization"]

    peer.revoke_all()
    second = run_senders(peer, threaded_httpserver)

    assert [len(r["ids"]) for r in second] == [10, 10]
    assert peer.token_calls == 2
    assert peer.refused and set(peer.refused) == {old}
    assert len(peer.sends) == 40
    assert len({s["authorization"] for s in peer.sends[20:]}) == 1
    assert peer.sends[20]["authorization"] != old


# --- errors -----------------------------------------------------------------------------------
ERRORS = [
    pytest.param(404, google_error(404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"), {},
                 DeadAddressError, "UNREGISTERED", id="unregistered"),
    pytest.param(400, google_error(400, "INVALID_ARGUMENT", "The registration token is not a valid FCM "
                                   "registration token", "INVALID_ARGUMENT"), {},
                 InvalidAddressError, "INVALID_ARGUMENT", id="invalid-token"),
    pytest.param(400, google_error(400, "INVALID_ARGUMENT", "Invalid value", details=[{
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "fieldViolations": [{"field": "message.token", "description": "Invalid registration token"}]}]), {},
        InvalidAddressError, "INVALID_ARGUMENT", id="token-field-violation"),
    pytest.param(403, google_error(403, "PERMISSION_DENIED", "SenderId mismatch", "SENDER_ID_MISMATCH"), {},
                 InvalidAddressError, "SENDER_ID_MISMATCH", id="sender-id-mismatch"),
    pytest.param(401, google_error(401, "UNAUTHENTICATED", "Auth error from APNS or Web Push Service",
                                   "THIRD_PARTY_AUTH_ERROR"), {},
                 AccountError, "THIRD_PARTY_AUTH_ERROR", id="third-party-auth"),
    pytest.param(403, google_error(403, "PERMISSION_DENIED", "Permission 'cloudmessaging.messages.create' denied "
                                   "on resource '//cloudresourcemanager.googleapis.com/projects/notifyhub-test' "
                                   "(or it may not exist).", details=[{
                                       "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                       "reason": "IAM_PERMISSION_DENIED",
                                       "domain": "cloudresourcemanager.googleapis.com"}]),
                 {}, AccountError, "PERMISSION_DENIED", id="permission-denied"),
]


@pytest.mark.parametrize(("status", "body", "headers", "error", "code"), ERRORS)
def test_fcm_error_codes_map_to_channel_errors(google, httpserver, status, body, headers, error, code):
    google.replies[TOKEN] = (status, body, headers)

    with pytest.raises(error) as info:
        backend(google, httpserver).send(message())

    assert type(info.value) is error  # not a broader or narrower class
    assert info.value.code == code
    assert info.value.status == status
    assert json.loads(info.value.response) == body
    assert google.token_calls == 1  # none of these is a reason to fetch another token


def test_invalid_message_that_is_not_about_the_token_is_permanent(google, httpserver):
    body = google_error(400, "INVALID_ARGUMENT", "Invalid value at 'message.data[0].value' (TYPE_STRING), 12",
                        details=[{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [
                            {"field": "message.data[0].value", "description": "Invalid value"}]}])
    google.replies[TOKEN] = (400, body, {})

    with pytest.raises(PermanentChannelError) as info:
        backend(google, httpserver).send(message())

    assert not isinstance(info.value, InvalidAddressError)
    assert info.value.code == "INVALID_ARGUMENT"


@pytest.mark.parametrize(("status", "status_name", "fcm_code", "retry_after"), [
    (429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "60"),
    (503, "UNAVAILABLE", "UNAVAILABLE", "30"),
    (500, "INTERNAL", "INTERNAL", None),
])
def test_quota_and_outages_are_transient_with_retry_after(google, httpserver, status, status_name, fcm_code,
                                                          retry_after):
    headers = {"Retry-After": retry_after} if retry_after else {}
    google.replies[TOKEN] = (status, google_error(status, status_name, "try later", fcm_code), headers)

    with pytest.raises(TransientChannelError) as info:
        backend(google, httpserver).send(message())

    assert info.value.code == fcm_code
    assert info.value.retry_after == (float(retry_after) if retry_after else None)


def test_unreachable_fcm_is_transient(google, httpserver):
    from tests.conftest import free_port

    b = backend(google, httpserver, api_base=f"http://127.0.0.1:{free_port()}")

    with pytest.raises(TransientChannelError) as info:
        b.send(message())

    assert info.value.code == "connection_error"


# --- options and addresses --------------------------------------------------------------------
def valid_options(httpserver) -> dict:
    return {"service_account_json": ServiceAccount(token_uri=httpserver.url_for("/token")).json()}


def test_project_id_defaults_to_the_keys(httpserver):
    assert FcmBackend.validate_options(valid_options(httpserver))["project_id"] == "notifyhub-test"


def test_missing_service_account_is_named():
    with pytest.raises(ValidationError) as info:
        FcmBackend.validate_options({"project_id": "p"})

    assert "service_account_json" in info.value.detail


BAD_PEM = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"


def key_json_with(httpserver, **changes) -> str:
    info = ServiceAccount(token_uri=httpserver.url_for("/token")).info()
    info.update(changes)
    return json.dumps({k: v for k, v in info.items() if v is not None})


@pytest.mark.parametrize("case", ["not-json", "not-service-account", "bad-pem", "ec-key", "no-client-email",
                                  "no-token-uri", "token-uri-ftp"])
def test_malformed_service_account_is_a_field_error(httpserver, case):
    value = {
        "not-json": lambda: "{not json",
        "not-service-account": lambda: key_json_with(httpserver, type="authorized_user"),
        "bad-pem": lambda: key_json_with(httpserver, private_key=BAD_PEM),
        "ec-key": lambda: key_json_with(httpserver, private_key=pem(ec.generate_private_key(ec.SECP256R1()))),
        "no-client-email": lambda: key_json_with(httpserver, client_email=None),
        "no-token-uri": lambda: key_json_with(httpserver, token_uri=None),
        "token-uri-ftp": lambda: key_json_with(httpserver, token_uri="ftp://oauth2.example.com/token"),
    }[case]()

    with pytest.raises(ValidationError) as info:
        FcmBackend.validate_options({"service_account_json": value})

    assert list(info.value.detail) == ["service_account_json"]


def test_key_without_project_needs_project_id(httpserver):
    with pytest.raises(ValidationError) as info:
        FcmBackend.validate_options({"service_account_json": key_json_with(httpserver, project_id=None)})

    assert list(info.value.detail) == ["project_id"]


@pytest.mark.parametrize("api_base", ["ftp://fcm.example.com", "not a url"])
def test_bad_api_base_is_named(httpserver, api_base):
    with pytest.raises(ValidationError) as info:
        FcmBackend.validate_options({**valid_options(httpserver), "api_base": api_base})

    assert list(info.value.detail) == ["api_base"]


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[])
def test_private_api_base_is_refused(httpserver):
    with pytest.raises(ValidationError) as info:
        FcmBackend.validate_options({**valid_options(httpserver), "api_base": "http://10.1.2.3"})

    assert "api_base" in info.value.detail


def test_registration_token_validation():
    assert FcmBackend.validate_address(f"  {TOKEN} ") == TOKEN
    for bad in ["", "short", "has space in the middle of a long token value", "tok\u00e9n" * 10]:
        with pytest.raises(InvalidAddressError):
            FcmBackend.validate_address(bad)


def test_contact_points_of_the_fcm_platform_are_accepted():
    assert FcmBackend.accepts_app(app="fcm", options={}, account="fcm-main")
    assert not FcmBackend.accepts_app(app="apns", options={}, account="fcm-main")
