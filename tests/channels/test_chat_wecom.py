"""WeCom group robot against a local peer written from WeCom's "群机器人配置说明".

The peer checks what WeCom checks: POST JSON to /cgi-bin/webhook/send?key=KEY, a known msgtype,
non-empty content within its byte limit (text 2048, markdown 4096), and answers with WeCom's real
bodies. Verified: text and markdown shapes, mentions and the step-down to text, cards as markdown,
every errcode class, option validation.
"""
import json
import uuid

import pytest
from django.test import override_settings
from rest_framework.exceptions import ValidationError
from werkzeug import Request, Response

from channels_app.backends.wecom import WeComBackend
from channels_app.errors import AccountError, PermanentChannelError, TransientChannelError
from channels_app.message import OutboundMessage, SendResult

KEY = "693a91f6-7b2c-4bc4-97a0-0ec2f1fa5aaa"
PATH = "/cgi-bin/webhook/send"
HINT = "hint: [1755605200056773468916791], from ip: 127.0.0.1, more info at https://open.work.weixin.qq.com/devtool/query"
LIMITS = {"text": 2048, "markdown": 4096}


def reply(body: dict) -> Response:
    return Response(json.dumps(body), content_type="application/json")


class WeComRobot:
    """The robot endpoint as WeCom documents it; ``received`` holds accepted messages."""

    def __init__(self):
        self.received: list[dict] = []

    def __call__(self, request: Request) -> Response:
        if request.method != "POST" or request.args.get("key") != KEY:
            return reply({"errcode": 93000, "errmsg": f"invalid webhook url, {HINT}?e=93000"})
        body = json.loads(request.get_data().decode("utf-8"))
        msgtype = body.get("msgtype")
        if msgtype not in LIMITS:
            return reply({"errcode": 40008, "errmsg": f"invalid message type, {HINT}?e=40008"})
        content = (body.get(msgtype) or {}).get("content")
        if not content:
            return reply({"errcode": 44004, "errmsg": f"empty content, {HINT}?e=44004"})
        if len(content.encode()) > LIMITS[msgtype]:
            return reply({"errcode": 40058, "errmsg": f"{msgtype}.content exceed max length {LIMITS[msgtype]}. "
                                                      f"invalid Request Parameter, {HINT}?e=40058"})
        self.received.append(body)
        return reply({"errcode": 0, "errmsg": "ok"})


def backend(server, key: str = KEY) -> WeComBackend:
    return WeComBackend(options=WeComBackend.validate_options({"webhook_url": server.url_for(PATH) + f"?key={key}"}))


def message(**content) -> OutboundMessage:
    return OutboundMessage(delivery_id=str(uuid.uuid4()), kind="chat", address="ops group", content=content)


@pytest.fixture
def robot(httpserver):
    peer = WeComRobot()
    httpserver.expect_request(PATH).respond_with_handler(peer)
    return peer


def test_text_with_every_kind_of_mention(httpserver, robot):
    result = backend(httpserver).send(message(
        text="广州今日天气：29度", mentions={"user_ids": ["wangqing"], "mobiles": ["13800001111"], "all": True}))

    assert result == SendResult(detail="sent as text")
    assert robot.received == [{"msgtype": "text", "text": {
        "content": "广州今日天气：29度", "mentioned_list": ["wangqing", "@all"],
        "mentioned_mobile_list": ["13800001111"]}}]


def test_plain_text_has_no_mention_lists(httpserver, robot):
    backend(httpserver).send(message(text="hello"))

    assert robot.received == [{"msgtype": "text", "text": {"content": "hello"}}]


def test_markdown_with_title_and_userid_mentions(httpserver, robot):
    result = backend(httpserver).send(message(
        title="实时新增用户反馈", text="fallback", markdown="> 类型:<font color=\"comment\">用户反馈</font>",
        mentions={"user_ids": ["wangqing", "lisi"]}))

    assert result.detail == "sent as markdown"
    assert robot.received == [{"msgtype": "markdown", "markdown": {
        "content": "**实时新增用户反馈**\n> 类型:<font color=\"comment\">用户反馈</font>\n<@wangqing> <@lisi>"}}]


def test_markdown_steps_down_to_text_for_mentions_it_cannot_make(httpserver, robot):
    result = backend(httpserver).send(message(
        text="db-1 down", markdown="**db-1** down", mentions={"mobiles": ["13800001111"]}))

    assert result.detail == "sent as text"
    assert robot.received[0] == {"msgtype": "text", "text": {"content": "db-1 down",
                                                             "mentioned_mobile_list": ["13800001111"]}}


def test_markdown_only_content_keeps_markdown_and_notes_the_missing_mentions(httpserver, robot):
    result = backend(httpserver).send(message(markdown="**db-1** down", mentions={"mobiles": ["13800001111"],
                                                                                  "all": True}))

    assert result.detail == "sent as markdown; not mentioned: mobiles, everyone (WeCom markdown cannot mention them)"
    assert robot.received[0] == {"msgtype": "markdown", "markdown": {"content": "**db-1** down"}}


def test_card_goes_as_markdown_with_links(httpserver, robot):
    backend(httpserver).send(message(title="Expense #42", card={
        "text": "Ada asks for 120 EUR", "buttons": [{"title": "Review", "url": "https://erp.example.com/42"}]}))

    assert robot.received == [{"msgtype": "markdown", "markdown": {
        "content": "**Expense #42**\nAda asks for 120 EUR\n\n[Review](https://erp.example.com/42)"}}]


def test_overlong_markdown_is_refused_by_the_peer_as_permanent(httpserver, robot):
    with pytest.raises(PermanentChannelError) as info:
        backend(httpserver).send(message(markdown="x" * 5000))

    assert type(info.value) is PermanentChannelError
    assert info.value.code == "40058"
    assert robot.received == []


def test_wrong_key_is_an_account_error(httpserver, robot):
    with pytest.raises(AccountError) as info:
        backend(httpserver, key="00000000-0000-0000-0000-000000000000").send(message(text="hi"))

    assert info.value.code == "93000"


@pytest.mark.parametrize(("body", "error", "retry_after"), [
    ({"errcode": 45009, "errmsg": f"api freq out of limit, {HINT}?e=45009"}, TransientChannelError, 60),
    ({"errcode": -1, "errmsg": "system busy"}, TransientChannelError, None),
    ({"errcode": 93000, "errmsg": f"invalid webhook url, {HINT}?e=93000"}, AccountError, None),
    ({"errcode": 40008, "errmsg": f"invalid message type, {HINT}?e=40008"}, PermanentChannelError, None),
    ({"errcode": 44004, "errmsg": f"empty content, {HINT}?e=44004"}, PermanentChannelError, None),
])
def test_errcodes_map_to_outcomes(httpserver, body, error, retry_after):
    httpserver.expect_request(PATH).respond_with_response(reply(body))

    with pytest.raises(error) as info:
        backend(httpserver).send(message(text="hi"))

    assert type(info.value) is error
    assert info.value.code == str(body["errcode"])
    if error is TransientChannelError:
        assert info.value.retry_after == retry_after


def test_key_does_not_appear_in_transport_errors():
    from tests.conftest import free_port

    b = WeComBackend(options={"webhook_url": f"http://127.0.0.1:{free_port()}{PATH}?key={KEY}", "timeout": 2})
    with pytest.raises(TransientChannelError) as info:
        b.send(message(text="hi"))

    assert KEY not in info.value.detail


GOOD_URL = f"https://qyapi.weixin.qq.com{PATH}?key={KEY}"


@pytest.mark.parametrize(("data", "says"), [
    ({}, "required"),
    ({"webhook_url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send"}, "key"),
    ({"webhook_url": f"https://qyapi.weixin.qq.com/cgi-bin/message/send?key={KEY}"}, "/cgi-bin/webhook/send"),
    ({"webhook_url": KEY}, "valid URL"),
])
def test_bad_webhook_url_is_named(data, says):
    with pytest.raises(ValidationError) as info:
        WeComBackend.validate_options(data)

    assert set(info.value.detail) == {"webhook_url"}
    assert says in str(info.value.detail["webhook_url"][0])


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[])
def test_private_webhook_url_is_refused():
    with pytest.raises(ValidationError) as info:
        WeComBackend.validate_options({"webhook_url": f"http://127.0.0.1{PATH}?key={KEY}"})

    assert set(info.value.detail) == {"webhook_url"}


def test_good_options():
    assert WeComBackend.validate_options({"webhook_url": GOOD_URL}) == {"webhook_url": GOOD_URL, "timeout": 10.0}
    assert WeComBackend.secret_fields == {"webhook_url"}
    assert WeComBackend.default_rate == "20/m"
