"""DingTalk custom robot against a local peer written from DingTalk's robot documents.

The peer checks what DingTalk checks: POST to /robot/send with the access_token, a UTF-8 JSON
body, and (加签) a millisecond timestamp within an hour plus a URL-encoded base64 HMAC-SHA256 of
"timestamp\\nsecret" keyed with the secret, recomputed here; it answers with DingTalk's real
bodies. Verified: text, markdown and actionCard shapes, mentions (at + @tokens), card fallbacks,
every errcode class, no token in error details, option validation.
"""
import base64
import hashlib
import hmac
import json
import time
import uuid
from urllib.parse import quote_plus

import pytest
from django.test import override_settings
from rest_framework.exceptions import ValidationError
from werkzeug import Request, Response

from channels_app.backends.dingtalk import DingTalkBackend
from channels_app.errors import AccountError, PermanentChannelError, TransientChannelError
from channels_app.message import OutboundMessage, SendResult
from tests.conftest import free_port

TOKEN = "6f1c3b2a9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b"
SECRET = "SEC" + "5a3ecf88f2b3eb50db30ecfc00f53033ac909c99bf7f88fd612bda89d7f3a9dc"
OK = {"errcode": 0, "errmsg": "ok"}


def reply(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, content_type="application/json")


class DingTalkRobot:
    """The robot endpoint as DingTalk documents it; ``received`` holds accepted JSON bodies."""

    def __init__(self, secret: str | None = SECRET, keywords: tuple[str, ...] = ()):
        self.secret = secret
        self.keywords = keywords
        self.received: list[dict] = []
        self.requests: list[Request] = []

    def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        if request.method != "POST":
            return reply({"errcode": 43002, "errmsg": "需要POST请求"})
        if request.path != "/robot/send" or request.args.get("access_token") != TOKEN:
            return reply({"errcode": 300005, "errmsg": "token is not exist"})
        if request.mimetype != "application/json" or request.mimetype_params.get("charset", "").lower() != "utf-8":
            return reply({"errcode": 43004, "errmsg": "无效的HTTP HEADER Content-Type"})
        if self.secret:
            problem = self.signature_problem(request)
            if problem:
                return reply({"errcode": 310000, "errmsg": f"{problem}, more: [https://ding-doc.dingtalk.com/doc]"})
        body = json.loads(request.get_data().decode("utf-8"))
        if self.keywords and not any(k in json.dumps(body, ensure_ascii=False) for k in self.keywords):
            return reply({"errcode": 310000, "errmsg": "keywords not in content, more: [https://ding-doc.dingtalk.com]"})
        self.received.append(body)
        return reply(OK)

    def signature_problem(self, request: Request) -> str:
        timestamp, signature = request.args.get("timestamp", ""), request.args.get("sign", "")
        if not timestamp.isdigit() or abs(time.time() * 1000 - int(timestamp)) > 3600 * 1000:
            return "invalid timestamp"
        digest = hmac.new(self.secret.encode(), f"{timestamp}\n{self.secret}".encode(), hashlib.sha256).digest()
        expected = base64.b64encode(digest).decode()
        # The sign travels URL-encoded: an unencoded "+" would arrive as a space.
        if not hmac.compare_digest(signature, expected) or f"sign={quote_plus(expected)}" not in (
                request.query_string.decode()):
            return "sign not match"
        return ""


def webhook_url(server, token: str = TOKEN) -> str:
    return server.url_for("/robot/send") + f"?access_token={token}"


def backend(server, secret: str | None = SECRET, **options) -> DingTalkBackend:
    data = {"webhook_url": webhook_url(server), **options}
    if secret is not None:
        data["secret"] = secret
    return DingTalkBackend(options=DingTalkBackend.validate_options(data), account="ops-robot")


def message(address: str = "ops group", **content) -> OutboundMessage:
    return OutboundMessage(delivery_id=str(uuid.uuid4()), kind="chat", address=address, content=content)


@pytest.fixture
def robot(httpserver):
    peer = DingTalkRobot()
    httpserver.expect_request("/robot/send").respond_with_handler(peer)
    return peer


# --- formats -----------------------------------------------------------------------------------
def test_text_with_mentions_is_signed_and_shaped_as_documented(httpserver, robot):
    result = backend(httpserver).send(message(
        text="Disk full on db-1", mentions={"mobiles": ["13800001111"], "user_ids": ["manager7"], "all": False}))

    assert result == SendResult(detail="sent as text")
    assert robot.received == [{
        "msgtype": "text",
        "text": {"content": "Disk full on db-1\n@13800001111 @manager7"},
        "at": {"atMobiles": ["13800001111"], "atUserIds": ["manager7"], "isAtAll": False},
    }]
    (request,) = robot.requests
    assert request.method == "POST"
    assert set(request.args) == {"access_token", "timestamp", "sign"}


def test_markdown_is_preferred_to_text_and_carries_the_title(httpserver, robot):
    backend(httpserver).send(message(text="plain", markdown="#### DB alert\n> disk **95%**", title="DB alert"))

    assert robot.received == [{"msgtype": "markdown", "markdown": {"title": "DB alert",
                                                                   "text": "#### DB alert\n> disk **95%**"}}]


def test_markdown_without_title_uses_its_first_line(httpserver, robot):
    backend(httpserver).send(message(markdown="### Deploy finished\nAll green"))

    assert robot.received[0]["markdown"]["title"] == "Deploy finished"


def test_markdown_mentions_everyone(httpserver, robot):
    backend(httpserver).send(message(markdown="Release at 18:00", mentions={"all": True}))

    assert robot.received[0]["at"] == {"atMobiles": [], "atUserIds": [], "isAtAll": True}
    assert robot.received[0]["markdown"]["text"] == "Release at 18:00"


def test_card_with_one_button_is_an_action_card(httpserver, robot):
    result = backend(httpserver).send(message(
        title="Approval needed", text="fallback",
        card={"text": "### Expense #42\nAda asks for 120 EUR", "buttons": [
            {"title": "Review", "url": "https://erp.example.com/expenses/42"}]}))

    assert result.detail == "sent as actionCard"
    assert robot.received == [{"msgtype": "actionCard", "actionCard": {
        "title": "Approval needed", "text": "### Expense #42\nAda asks for 120 EUR", "btnOrientation": "0",
        "singleTitle": "Review", "singleURL": "https://erp.example.com/expenses/42"}}]


def test_card_with_several_buttons_lists_them(httpserver, robot):
    backend(httpserver).send(message(card={"text": "Expense #42", "buttons": [
        {"title": "Approve", "url": "https://erp.example.com/42/approve"},
        {"title": "Reject", "url": "https://erp.example.com/42/reject"}]}))

    card = robot.received[0]["actionCard"]
    assert card["btns"] == [{"title": "Approve", "actionURL": "https://erp.example.com/42/approve"},
                            {"title": "Reject", "actionURL": "https://erp.example.com/42/reject"}]
    assert "singleTitle" not in card
    assert card["title"] == "Expense #42"


def test_card_with_mentions_goes_as_markdown_because_action_cards_cannot_at(httpserver, robot):
    result = backend(httpserver).send(message(
        title="On call", mentions={"mobiles": ["13800001111"]},
        card={"text": "Pager: db-1 down", "buttons": [{"title": "Runbook", "url": "https://wiki.example.com/db"}]}))

    assert result.detail == "sent as markdown"
    assert robot.received == [{
        "msgtype": "markdown",
        "markdown": {"title": "On call",
                     "text": "Pager: db-1 down\n\n[Runbook](https://wiki.example.com/db)\n\n@13800001111"},
        "at": {"atMobiles": ["13800001111"], "atUserIds": [], "isAtAll": False},
    }]


def test_mention_already_in_the_text_is_not_repeated(httpserver, robot):
    backend(httpserver).send(message(text="@13800001111 please look", mentions={"mobiles": "13800001111"}))

    assert robot.received[0]["text"]["content"] == "@13800001111 please look"


def test_address_is_only_a_label(httpserver, robot):
    backend(httpserver).send(message(address="team-ops-label", text="hello"))

    assert "team-ops-label" not in robot.requests[0].get_data(as_text=True)
    assert "team-ops-label" not in robot.requests[0].full_path


def test_without_secret_no_signature_is_added(httpserver):
    peer = DingTalkRobot(secret=None, keywords=("告警",))
    httpserver.expect_request("/robot/send").respond_with_handler(peer)

    backend(httpserver, secret=None).send(message(text="告警: disk full"))

    assert set(peer.requests[0].args) == {"access_token"}
    assert peer.received[0]["text"]["content"] == "告警: disk full"


def test_slack_blocks_alone_cannot_be_sent(httpserver, robot):
    with pytest.raises(PermanentChannelError) as info:
        backend(httpserver).send(message(blocks=[{"type": "divider"}]))

    assert info.value.code == "no_content"
    assert robot.requests == []


def test_malformed_card_is_a_content_error(httpserver, robot):
    with pytest.raises(PermanentChannelError) as info:
        backend(httpserver).send(message(card={"text": "x", "buttons": [{"title": "no url"}]}))

    assert info.value.code == "invalid_content"
    assert robot.requests == []


# --- the peer's security checks are real -------------------------------------------------------
def test_wrong_secret_is_refused_by_the_peer_as_an_account_error(httpserver, robot):
    with pytest.raises(AccountError) as info:
        backend(httpserver, secret="SEC" + "0" * 64).send(message(text="hi"))

    assert info.value.code == "310000"
    assert "sign not match" in str(info.value)
    assert robot.received == []


def test_missing_keyword_is_permanent_for_the_message_not_the_account(httpserver):
    peer = DingTalkRobot(keywords=("告警",))
    httpserver.expect_request("/robot/send").respond_with_handler(peer)
    b = backend(httpserver)

    with pytest.raises(PermanentChannelError) as info:
        b.send(message(text="no keyword here"))
    b.send(message(text="告警: with keyword"))

    assert not isinstance(info.value, AccountError)
    assert info.value.code == "310000"
    assert [body["text"]["content"] for body in peer.received] == ["告警: with keyword"]


# --- errcodes ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("body", "error", "retry_after"), [
    ({"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"}, TransientChannelError, 600),
    ({"errcode": 410100, "errmsg": "发送速度太快而限流"}, TransientChannelError, 600),
    ({"errcode": -1, "errmsg": "系统繁忙"}, TransientChannelError, None),
    ({"errcode": 300001, "errmsg": "token is not exist"}, AccountError, None),
    ({"errcode": 300005, "errmsg": "token is not exist"}, AccountError, None),
    ({"errcode": 400013, "errmsg": "群已被解散"}, AccountError, None),
    ({"errcode": 400102, "errmsg": "机器人已停用"}, AccountError, None),
    ({"errcode": 310000, "errmsg": "ip 1.2.3.4 not in whitelist, more: [https://ding-doc.dingtalk.com]"},
     AccountError, None),
    ({"errcode": 310000, "errmsg": "invalid timestamp, more: [https://ding-doc.dingtalk.com]"}, AccountError, None),
    ({"errcode": 310000,
      "errmsg": "description:机器人发送签名不匹配;solution:请确认签名和生成签名的时间戳必须都放在调用的网址中"},
     AccountError, None),
    ({"errcode": 310000, "errmsg": "description:关键词不匹配;solution:请联系群管理员查看此机器人的关键词"},
     PermanentChannelError, None),
    ({"errcode": 400105, "errmsg": "不支持的消息类型"}, PermanentChannelError, None),
    ({"errcode": 40035, "errmsg": "缺少参数 json"}, PermanentChannelError, None),
])
def test_errcodes_map_to_outcomes(httpserver, body, error, retry_after):
    httpserver.expect_request("/robot/send").respond_with_response(reply(body))

    with pytest.raises(error) as info:
        backend(httpserver).send(message(text="hi"))

    assert type(info.value) is error
    assert info.value.code == str(body["errcode"])
    assert info.value.status == 200
    assert body["errmsg"] in info.value.response
    if error is TransientChannelError:
        assert info.value.retry_after == retry_after


def test_gateway_error_page_is_transient(httpserver):
    httpserver.expect_request("/robot/send").respond_with_data("<html>502 Bad Gateway</html>", status=502)

    with pytest.raises(TransientChannelError) as info:
        backend(httpserver).send(message(text="hi"))

    assert info.value.status == 502


def test_a_200_that_is_not_dingtalk_is_not_taken_for_success(httpserver):
    httpserver.expect_request("/robot/send").respond_with_data("<html>captive portal</html>", status=200)

    with pytest.raises(PermanentChannelError) as info:
        backend(httpserver).send(message(text="hi"))

    assert info.value.code == "unexpected_response"


def test_connection_failure_does_not_reveal_the_token():
    port = free_port()
    b = DingTalkBackend(options=DingTalkBackend.validate_options(
        {"webhook_url": f"http://127.0.0.1:{port}/robot/send?access_token={TOKEN}", "secret": SECRET}))

    with pytest.raises(TransientChannelError) as info:
        b.send(message(text="hi"))

    assert info.value.code == "connection_error"
    assert "/robot/send?***" in info.value.detail
    assert TOKEN not in info.value.detail
    assert "sign=" not in info.value.detail


def test_send_many_delivers_each_message(httpserver, robot):
    messages = [message(text=f"event {i}") for i in range(5)]

    with backend(httpserver) as b:
        outcomes = list(b.send_many(messages))

    assert all(isinstance(outcome, SendResult) for _, outcome in outcomes)
    assert sorted(body["text"]["content"] for body in robot.received) == [f"event {i}" for i in range(5)]


# --- options -----------------------------------------------------------------------------------
GOOD_URL = f"https://oapi.dingtalk.com/robot/send?access_token={TOKEN}"


@pytest.mark.parametrize(("data", "field", "says"), [
    ({}, "webhook_url", "required"),
    ({"webhook_url": "not a url"}, "webhook_url", "valid URL"),
    ({"webhook_url": "ftp://oapi.dingtalk.com/robot/send?access_token=x"}, "webhook_url", "http and https"),
    ({"webhook_url": "https://oapi.dingtalk.com/robot/send"}, "webhook_url", "access_token"),
    ({"webhook_url": "https://oapi.dingtalk.com/other?access_token=abc"}, "webhook_url", "/robot/send"),
    ({"webhook_url": GOOD_URL, "secret": "5a3ecf88f2b3eb50"}, "secret", "start with SEC"),
    ({"webhook_url": GOOD_URL, "secret": "SEC abc"}, "secret", "start with SEC"),
])
def test_bad_options_name_the_field(data, field, says):
    with pytest.raises(ValidationError) as info:
        DingTalkBackend.validate_options(data)

    assert set(info.value.detail) == {field}
    assert says in str(info.value.detail[field][0])


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[])
def test_private_webhook_url_is_refused():
    with pytest.raises(ValidationError) as info:
        DingTalkBackend.validate_options({"webhook_url": f"http://10.0.0.5/robot/send?access_token={TOKEN}"})

    assert set(info.value.detail) == {"webhook_url"}
    assert "private or reserved" in str(info.value.detail["webhook_url"][0])


def test_good_options_and_secret_fields():
    options = DingTalkBackend.validate_options({"webhook_url": GOOD_URL, "secret": SECRET})

    assert options == {"webhook_url": GOOD_URL, "secret": SECRET, "timeout": 10.0}
    assert DingTalkBackend.secret_fields == {"webhook_url", "secret"}
    assert DingTalkBackend.default_rate == "20/m"
    assert DingTalkBackend.accepts_app(app="ops-robot", options=options, account="ops-robot")
    assert not DingTalkBackend.accepts_app(app="other-robot", options=options, account="ops-robot")
