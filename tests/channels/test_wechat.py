"""WeChat backends against a fake api.weixin.qq.com (tests/channels/wechat_peer.py).

Verified: the template message and subscribe message wire formats (method, path, access_token
query, exact JSON body); the stable token request; each documented errcode mapped to the right
error with the code kept; one token fetch for many sends across threads and across two worker
processes sharing Redis, and one more after WeChat reports the token expired (the failing send
then succeeds); a token refused twice fails after exactly one retry; option validation.
"""
import json
import os
import subprocess
import sys
import threading
import uuid
from datetime import UTC, datetime

import pytest
from django.conf import settings
from django.core.cache import cache
from rest_framework.exceptions import ValidationError
from werkzeug import Response

from channels_app.backends.wechat import WeChatMiniProgramBackend, WeChatOfficialAccountBackend
from channels_app.backends.wechat_token import AccessTokenRejected, WeChatApiBackend, seconds_to_quota_reset
from channels_app.errors import (
    AccountError,
    InvalidAddressError,
    PermanentChannelError,
    TransientChannelError,
)
from channels_app.message import OutboundMessage, SendResult
from channels_app.registry import all_backends, backend_class
from tests.channels.wechat_peer import ERRMSG, TEMPLATE_PATH, WeChatPeer
from tests.conftest import ROOT, free_port

APP_ID = "wx0123456789abcdef"
APP_SECRET = "0123456789abcdef0123456789abcdef"
OTHER_APP_ID = "wxfedcba9876543210"
OPENID = "oMsT10SK1anSqHduazp_zL36CJ9w"


@pytest.fixture(autouse=True)
def _no_cached_tokens():
    """Tokens live in the shared cache: start and end every test without one."""
    keys = [f"notifyhub:token:wechat:{app}{suffix}" for app in (APP_ID, OTHER_APP_ID) for suffix in ("", ":lock")]
    cache.delete_many(keys)
    yield
    cache.delete_many(keys)


def options(server, **extra) -> dict:
    return {"app_id": APP_ID, "app_secret": APP_SECRET, "api_base": server.url_for("/").rstrip("/"), **extra}


def oa(server, **extra) -> WeChatOfficialAccountBackend:
    return WeChatOfficialAccountBackend(options=WeChatOfficialAccountBackend.validate_options(options(server, **extra)))


def mp(server, **extra) -> WeChatMiniProgramBackend:
    return WeChatMiniProgramBackend(options=WeChatMiniProgramBackend.validate_options(options(server, **extra)))


def message(address: str = OPENID, **content) -> OutboundMessage:
    content.setdefault("template_id", "ngqIpbwh8bUfcSsECmogfXcV14J0tQlEpBO27izEYtY")
    content.setdefault("data", {"thing1": "订单 1001 已发货", "time2": "2026-03-01 12:30"})
    return OutboundMessage(delivery_id=str(uuid.uuid4()), kind="wechat", address=address, content=content)


@pytest.fixture
def peer(httpserver):
    return WeChatPeer(httpserver, APP_ID, APP_SECRET)


# --- wire format ------------------------------------------------------------------------------
def test_template_message_matches_the_documented_request(peer, httpserver):
    msg = message(url="https://shop.example/orders/1001",
                  miniprogram={"appid": "wx1111222233334444", "pagepath": "pages/order?id=1001"})

    with oa(httpserver) as backend:
        result = backend.send(msg)

    assert result == SendResult(provider_message_id="200228332", detail="ok")
    assert peer.problems == []
    assert peer.token_calls == 1
    (sent,) = peer.sent
    assert sent["path"] == TEMPLATE_PATH
    assert sent["token"] == peer.current_token
    assert sent["body"] == {
        "touser": OPENID,
        "template_id": "ngqIpbwh8bUfcSsECmogfXcV14J0tQlEpBO27izEYtY",
        "url": "https://shop.example/orders/1001",
        "miniprogram": {"appid": "wx1111222233334444", "pagepath": "pages/order?id=1001"},
        "client_msg_id": msg.delivery_id,
        "data": {"thing1": {"value": "订单 1001 已发货"}, "time2": {"value": "2026-03-01 12:30"}},
    }


def test_template_message_leaves_out_absent_links_and_sends_utf8(peer, httpserver):
    oa(httpserver).send(message(url="", miniprogram={}))

    (sent,) = peer.sent
    assert set(sent["body"]) == {"touser", "template_id", "client_msg_id", "data"}
    assert "订单 1001 已发货".encode() in sent["raw"]  # characters, not \uXXXX escapes
    assert peer.problems == []


def test_each_send_gets_its_own_msgid(peer, httpserver):
    backend = oa(httpserver)

    ids = [backend.send(message()).provider_message_id for _ in range(3)]

    assert ids == ["200228332", "200228333", "200228334"]
    assert peer.token_calls == 1


def test_subscribe_message_matches_the_documented_request(peer, httpserver):
    msg = message(template_id="AmSo7rRmDglDgkESd-9MK51ceRItrfW11Y4d0zNbNu8", page="pages/order/detail?id=5",
                  data={"thing1": "Ada", "number2": 3})

    with mp(httpserver, miniprogram_state="trial", lang="en_US") as backend:
        result = backend.send(msg)

    assert result == SendResult(provider_message_id="", detail="ok")
    assert peer.problems == []
    (sent,) = peer.sent
    assert sent["path"] == "/cgi-bin/message/subscribe/send"
    assert sent["body"] == {
        "touser": OPENID,
        "template_id": "AmSo7rRmDglDgkESd-9MK51ceRItrfW11Y4d0zNbNu8",
        "page": "pages/order/detail?id=5",
        "miniprogram_state": "trial",
        "lang": "en_US",
        "data": {"thing1": {"value": "Ada"}, "number2": {"value": "3"}},
    }


def test_subscribe_message_defaults_and_template_state_override(peer, httpserver):
    backend = mp(httpserver)

    backend.send(message())
    backend.send(message(miniprogram_state="developer"))

    first, second = (s["body"] for s in peer.sent)
    assert (first["miniprogram_state"], first["lang"]) == ("formal", "zh_CN")
    assert "page" not in first
    assert second["miniprogram_state"] == "developer"


def test_content_without_template_id_fails_before_any_request(peer, httpserver):
    with pytest.raises(PermanentChannelError) as info:
        oa(httpserver).send(message(template_id=""))

    assert info.value.code == "no_template_id"
    assert peer.token_calls == 0 and peer.attempts == []


def test_bad_mini_program_state_in_content_is_permanent(peer, httpserver):
    with pytest.raises(PermanentChannelError) as info:
        mp(httpserver).send(message(miniprogram_state="beta"))

    assert info.value.code == "invalid_content"
    assert peer.attempts == []


# --- errcode mapping --------------------------------------------------------------------------
SEND_ERRORS = [
    (43004, PermanentChannelError),   # require subscribe: the user does not follow the account
    (40003, InvalidAddressError),     # invalid openid
    (40037, PermanentChannelError),   # invalid template_id
    (47003, PermanentChannelError),   # argument invalid (template data)
    (45009, TransientChannelError),   # daily quota reached
    (45011, TransientChannelError),   # minute quota reached
    (45047, TransientChannelError),   # out of response count limit
    (-1, TransientChannelError),      # system error (busy)
    (48001, AccountError),            # api unauthorized
]


@pytest.mark.parametrize(("errcode", "error"), SEND_ERRORS)
def test_template_message_errors(peer, httpserver, errcode, error):
    peer.replies[OPENID] = errcode

    with pytest.raises(error) as info:
        oa(httpserver).send(message())

    assert type(info.value) is error
    assert info.value.code == str(errcode)
    assert ERRMSG[errcode] in str(info.value)
    assert peer.problems == []


@pytest.mark.parametrize(("errcode", "error"), [(43101, PermanentChannelError), *SEND_ERRORS])
def test_subscribe_message_errors(peer, httpserver, errcode, error):
    peer.replies[OPENID] = errcode

    with pytest.raises(error) as info:
        mp(httpserver).send(message())

    assert type(info.value) is error
    assert info.value.code == str(errcode)
    assert peer.problems == []


def test_quota_errors_say_when_to_retry(peer, httpserver):
    backend = oa(httpserver)
    peer.replies[OPENID] = 45009
    with pytest.raises(TransientChannelError) as daily:
        backend.send(message())
    peer.replies[OPENID] = 45011
    with pytest.raises(TransientChannelError) as minute:
        backend.send(message())

    assert daily.value.retry_after == pytest.approx(seconds_to_quota_reset(), abs=5)
    assert minute.value.retry_after == 60


def test_daily_quota_resets_at_midnight_beijing_time():
    assert seconds_to_quota_reset(datetime(2026, 3, 1, 15, 59, tzinfo=UTC)) == 60  # 23:59 in Beijing
    assert seconds_to_quota_reset(datetime(2026, 3, 1, 16, 0, tzinfo=UTC)) == 86400


@pytest.mark.parametrize("errcode", [40164, -1, 45009])
def test_token_endpoint_errors(peer, httpserver, errcode):
    peer.token_reply = errcode
    expected = TransientChannelError if errcode in (-1, 45009) else AccountError

    with pytest.raises(expected) as info:
        oa(httpserver).send(message())

    assert type(info.value) is expected
    assert info.value.code == str(errcode)
    assert peer.attempts == []


def test_wrong_app_id_and_wrong_secret_are_account_errors(peer, httpserver):
    with pytest.raises(AccountError) as wrong_app:
        oa(httpserver, app_id=OTHER_APP_ID).send(message())
    with pytest.raises(AccountError) as wrong_secret:
        oa(httpserver, app_secret="f" * 32).send(message())

    assert (wrong_app.value.code, wrong_secret.value.code) == ("40013", "40125")
    assert "invalid appsecret" in str(wrong_secret.value)
    assert peer.attempts == [] and peer.problems == []


def test_gateway_error_and_non_json_answer_are_transient(httpserver):
    httpserver.expect_request("/cgi-bin/stable_token").respond_with_response(Response("bad gateway", status=502))
    with pytest.raises(TransientChannelError) as gateway:
        oa(httpserver).send(message())
    httpserver.clear()
    httpserver.expect_request("/cgi-bin/stable_token").respond_with_data("<html>busy</html>", content_type="text/html")
    with pytest.raises(TransientChannelError) as html:
        oa(httpserver).send(message())

    assert gateway.value.status == 502
    assert html.value.code == "bad_response"


# --- access token -----------------------------------------------------------------------------
def test_connection_errors_do_not_record_the_access_token(peer, httpserver):
    oa(httpserver).send(message())  # the token is now cached for the app
    closed = f"http://127.0.0.1:{free_port()}"

    with pytest.raises(TransientChannelError) as info:
        oa(httpserver, api_base=closed).send(message())

    assert info.value.code == "connection_error"
    assert "access_token=***" in info.value.detail
    assert peer.current_token not in info.value.detail


@pytest.mark.parametrize("errcode", [42001, 40001, 40014])
def test_refused_token_is_refetched_and_the_send_retried_once(peer, httpserver, errcode):
    backend = oa(httpserver)
    backend.send(message())
    first_token = peer.current_token
    peer.expire_token(errcode)

    result = backend.send(message())
    backend.send(message())

    assert result.provider_message_id == "200228333"
    assert peer.token_calls == 2
    assert peer.tokens_used() == [first_token, peer.current_token, peer.current_token]
    assert peer.current_token != first_token
    assert [a["token"] for a in peer.attempts] == [first_token, first_token, peer.current_token, peer.current_token]


def test_token_refused_again_after_the_retry_fails_transient(peer, httpserver):
    peer.reject_every_token_with = 40001
    backend = oa(httpserver)

    with pytest.raises(AccessTokenRejected) as info:
        backend.send(message())

    assert isinstance(info.value, TransientChannelError)
    assert info.value.code == "40001"
    assert len(peer.attempts) == 2  # the send and exactly one retry
    assert peer.token_calls == 2
    peer.reject_every_token_with = None
    backend.send(message())
    assert peer.token_calls == 3  # the refused token was not kept


def test_token_is_shared_by_backend_instances_and_apps_are_kept_apart(peer, httpserver):
    oa(httpserver).send(message())
    oa(httpserver).send(message())
    mp(httpserver).send(message())

    assert peer.token_calls == 1
    assert len(set(peer.tokens_used())) == 1
    with pytest.raises(AccountError):  # another appid has a token of its own, fetched for it
        oa(httpserver, app_id=OTHER_APP_ID).send(message())
    assert peer.token_calls == 2


@pytest.mark.services  # the token lock needs an atomic cache.add(): Redis, not the embedded file cache
def test_many_threads_fetch_the_token_once(threaded_httpserver):
    peer = WeChatPeer(threaded_httpserver, APP_ID, APP_SECRET, token_delay=0.3)
    threads, barrier, failures = 24, threading.Barrier(24), []

    def worker():
        backend = oa(threaded_httpserver)  # each thread its own instance, like separate workers
        barrier.wait()
        try:
            backend.send(message())
        except Exception as exc:  # reported below
            failures.append(exc)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(30)

    assert failures == []
    assert peer.token_calls == 1
    assert len(peer.sent) == threads
    assert set(peer.tokens_used()) == {peer.current_token}


# --- acceptance: two worker processes share one token through Redis ----------------------------
WORKER_SCRIPT = """
import json, os, sys, time
import django
django.setup()
from channels_app.backends.wechat import WeChatOfficialAccountBackend
from channels_app.message import OutboundMessage

options, go_file, name, count = json.loads(sys.argv[1])
backend = WeChatOfficialAccountBackend(options=WeChatOfficialAccountBackend.validate_options(options))
messages = [
    OutboundMessage(delivery_id=f"{name}-{i}", kind="wechat", address=f"o{name}Openid{i:04d}abcdefghijklmn",
                    content={"template_id": "tpl-shipped", "data": {"thing1": f"order {i}"}})
    for i in range(count)
]
print("ready", flush=True)
deadline = time.monotonic() + 30
while not os.path.exists(go_file) and time.monotonic() < deadline:
    time.sleep(0.01)
with backend:
    outcomes = {m.delivery_id: getattr(o, "provider_message_id", None) or repr(o)
                for m, o in backend.send_many(messages)}
print(json.dumps(outcomes), flush=True)
"""


def run_worker_processes(server, tmp_path, round_name: str, count: int = 10) -> dict:
    """Start two processes, let them send at the same moment, return {delivery_id: outcome}."""
    go_file = tmp_path / f"go-{round_name}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "notifyhub.settings", "REDIS_URL": settings.REDIS_URL}
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT,
                          json.dumps([options(server), str(go_file), f"{round_name}{n}", count])],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in (1, 2)
    ]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
        go_file.touch()
        outcomes = {}
        for proc in procs:
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            outcomes.update(json.loads(out.strip().splitlines()[-1]))
        return outcomes
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.services
def test_two_worker_processes_fetch_one_token_and_one_more_after_it_expires(threaded_httpserver, tmp_path):
    peer = WeChatPeer(threaded_httpserver, APP_ID, APP_SECRET, token_delay=0.2)

    first = run_worker_processes(threaded_httpserver, tmp_path, "a")

    assert len(first) == 20 and all(outcome.isdigit() for outcome in first.values()), first
    assert peer.token_calls == 1
    first_token = peer.current_token
    assert set(peer.tokens_used()) == {first_token}

    peer.expire_token(42001)
    second = run_worker_processes(threaded_httpserver, tmp_path, "b")

    assert len(second) == 20 and all(outcome.isdigit() for outcome in second.values()), second
    assert peer.token_calls == 2
    assert peer.current_token != first_token
    assert set(peer.tokens_used()[20:]) == {peer.current_token}
    assert any(a["token"] == first_token for a in peer.attempts[20:])  # WeChat did say 42001 first
    assert peer.problems == []


# --- addresses, apps, registry, options ---------------------------------------------------------
def test_openid_belongs_to_the_account_of_its_app():
    account_options = {"app_id": APP_ID}
    for backend in (WeChatOfficialAccountBackend, WeChatMiniProgramBackend):
        assert backend.accepts_app(app=APP_ID, options=account_options, account="shop")
        assert backend.accepts_app(app="", options=account_options, account="shop")
        assert not backend.accepts_app(app=OTHER_APP_ID, options=account_options, account="shop")


def test_openid_validation():
    assert WeChatOfficialAccountBackend.validate_address(f" {OPENID} ") == OPENID
    for bad in ("", "not an openid", "o@example.com", "short"):
        with pytest.raises(InvalidAddressError):
            WeChatOfficialAccountBackend.validate_address(bad)


def test_backends_are_registered_and_the_base_is_not():
    assert backend_class("wechat_oa") is WeChatOfficialAccountBackend
    assert backend_class("wechat_mp") is WeChatMiniProgramBackend
    assert not any(cls.__name__ in ("WeChatApiBackend", "_WeChatMessageBackend") for cls in all_backends().values())
    assert issubclass(WeChatOfficialAccountBackend, WeChatApiBackend)
    assert WeChatOfficialAccountBackend.secret_fields == WeChatMiniProgramBackend.secret_fields == {"app_secret"}


def test_options_defaults():
    oa_options = WeChatOfficialAccountBackend.validate_options({"app_id": APP_ID, "app_secret": APP_SECRET})
    mp_options = WeChatMiniProgramBackend.validate_options({"app_id": APP_ID, "app_secret": APP_SECRET})

    assert oa_options == {"app_id": APP_ID, "app_secret": APP_SECRET, "api_base": "https://api.weixin.qq.com"}
    assert (mp_options["miniprogram_state"], mp_options["lang"]) == ("formal", "zh_CN")


@pytest.mark.parametrize(("data", "fields"), [
    ({}, {"app_id", "app_secret"}),
    ({"app_secret": APP_SECRET}, {"app_id"}),
    ({"app_id": APP_ID}, {"app_secret"}),
    ({"app_id": "wx123", "app_secret": APP_SECRET}, {"app_id"}),
    ({"app_id": "gh_0123456789ab", "app_secret": APP_SECRET}, {"app_id"}),
    ({"app_id": APP_ID, "app_secret": "not-a-secret"}, {"app_secret"}),
    ({"app_id": APP_ID, "app_secret": APP_SECRET, "api_base": "ftp://api.weixin.qq.com"}, {"api_base"}),
    ({"app_id": APP_ID, "app_secret": APP_SECRET, "api_base": "http://10.1.2.3"}, {"api_base"}),
])
def test_bad_options_name_the_field(data, fields):
    with pytest.raises(ValidationError) as info:
        WeChatOfficialAccountBackend.validate_options(data)

    assert set(info.value.detail) == fields


@pytest.mark.parametrize(("extra", "field"), [({"miniprogram_state": "beta"}, "miniprogram_state"),
                                              ({"lang": "fr_FR"}, "lang")])
def test_bad_mini_program_options_name_the_field(extra, field):
    with pytest.raises(ValidationError) as info:
        WeChatMiniProgramBackend.validate_options({"app_id": APP_ID, "app_secret": APP_SECRET, **extra})

    assert set(info.value.detail) == {field}
