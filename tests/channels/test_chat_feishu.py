"""Feishu / Lark custom bot against a local peer written from Feishu's custom bot guide.

The peer checks what Feishu checks: POST JSON to /open-apis/bot/v2/hook/<token>; with signature
verification a ``timestamp`` (seconds, as a string, within an hour) and a ``sign`` it recomputes
as base64(HMAC-SHA256(key="timestamp\\nsecret", msg="")); custom keywords; and it answers with
Feishu's real bodies. Verified: text, post and interactive shapes, mentions, every code class,
the legacy StatusCode answer, option validation.
"""
import base64
import hashlib
import hmac
import json
import re
import time
import uuid

import pytest
from django.test import override_settings
from rest_framework.exceptions import ValidationError
from werkzeug import Request, Response

from channels_app.backends.feishu import FeishuBackend
from channels_app.errors import AccountError, PermanentChannelError, TransientChannelError
from channels_app.message import OutboundMessage, SendResult

HOOK = "/open-apis/bot/v2/hook/3c1f0a5e-8b7d-4e2a-9f61-0d2c4b7a8e93"
SECRET = "qT2vXw9LmN4bZr7Ke1HsYd"
SUCCESS = {"code": 0, "data": {}, "msg": "success"}


def reply(body: dict, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, content_type="application/json",
                    headers=headers)


class FeishuBot:
    """The custom bot endpoint as Feishu documents it; ``received`` holds accepted messages."""

    def __init__(self, secret: str | None = SECRET, keywords: tuple[str, ...] = (), legacy: bool = False):
        self.secret, self.keywords, self.legacy = secret, keywords, legacy
        self.received: list[dict] = []
        self.signed: list[tuple[str, str]] = []

    def __call__(self, request: Request) -> Response:
        if request.path != HOOK:
            return reply({"code": 19001, "data": {}, "msg": "param invalid: incoming webhook access token invalid"})
        if request.method != "POST" or request.mimetype != "application/json":
            return reply({"code": 9499, "data": {}, "msg": "Bad Request"}, status=400)
        body = json.loads(request.get_data().decode("utf-8"))
        if self.secret:
            timestamp, signature = body.pop("timestamp", None), body.pop("sign", None)
            key = f"{timestamp}\n{self.secret}".encode()
            expected = base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
            if (not isinstance(timestamp, str) or not timestamp.isdigit()
                    or abs(time.time() - int(timestamp)) > 3600 or signature != expected):
                return reply({"code": 19021, "data": {},
                              "msg": "sign match fail or timestamp is not within one hour from current time"})
            self.signed.append((timestamp, signature))
        if self.keywords and not any(k in json.dumps(body, ensure_ascii=False) for k in self.keywords):
            return reply({"code": 19024, "data": {}, "msg": "Key Words Not Found"})
        if body.get("msg_type") not in ("text", "post", "interactive") or not (body.get("content") or body.get("card")):
            return reply({"code": 9499, "data": {}, "msg": "Bad Request"}, status=400)
        self.received.append(body)
        return reply({"Extra": None, "StatusCode": 0, "StatusMessage": "success"} if self.legacy else SUCCESS)


def backend(server, secret: str | None = SECRET, **options) -> FeishuBackend:
    data = {"webhook_url": server.url_for(HOOK), **options}
    if secret is not None:
        data["secret"] = secret
    return FeishuBackend(options=FeishuBackend.validate_options(data), account="ops-bot")


def message(**content) -> OutboundMessage:
    return OutboundMessage(delivery_id=str(uuid.uuid4()), kind="chat", address="ops group", content=content)


@pytest.fixture
def bot(httpserver):
    peer = FeishuBot()
    httpserver.expect_request(re.compile(r"/open-apis/bot/v2/hook/.*")).respond_with_handler(peer)
    return peer


# --- formats -----------------------------------------------------------------------------------
def test_text_is_signed_and_mentions_with_at_tags(httpserver, bot):
    result = backend(httpserver).send(message(
        text="Build failed", mentions={"user_ids": ["ou_7d8a6e6df7621556ce0d21922b676706ccs"], "all": True}))

    assert result == SendResult(detail="sent as text")
    assert bot.received == [{"msg_type": "text", "content": {
        "text": 'Build failed <at user_id="ou_7d8a6e6df7621556ce0d21922b676706ccs"></at> '
                '<at user_id="all">所有人</at>'}}]
    (timestamp, _), = bot.signed
    assert abs(int(timestamp) - time.time()) < 60  # seconds, not milliseconds


def test_mobiles_cannot_be_mentioned_and_the_detail_says_so(httpserver, bot):
    result = backend(httpserver).send(message(text="hi", mentions={"mobiles": ["13800001111"]}))

    assert result.detail == "sent as text; not mentioned: mobiles (Feishu cannot mention them)"
    assert bot.received[0]["content"]["text"] == "hi"


def test_markdown_becomes_a_rich_text_post(httpserver, bot):
    backend(httpserver).send(message(
        title="Deploy report", text="fallback", mentions={"user_ids": ["ou_abc"], "all": True},
        markdown="## Release 2.4\nBuild **passed** in [CI](https://ci.example.com/42)\n\nplain line"))

    assert bot.received == [{"msg_type": "post", "content": {"post": {"zh_cn": {
        "title": "Deploy report",
        "content": [
            [{"tag": "text", "text": "Release 2.4", "style": ["bold"]}],
            [{"tag": "text", "text": "Build "}, {"tag": "text", "text": "passed", "style": ["bold"]},
             {"tag": "text", "text": " in "}, {"tag": "a", "text": "CI", "href": "https://ci.example.com/42"}],
            [{"tag": "text", "text": ""}],
            [{"tag": "text", "text": "plain line"}],
            [{"tag": "at", "user_id": "ou_abc"}, {"tag": "at", "user_id": "all"}],
        ],
    }}}}]


def test_post_locale_is_an_option(httpserver, bot):
    backend(httpserver, post_locale="en_us").send(message(markdown="hello"))

    assert list(bot.received[0]["content"]["post"]) == ["en_us"]


def test_card_is_an_interactive_message(httpserver, bot):
    result = backend(httpserver).send(message(
        title="Approval needed", markdown="ignored: the card is richer", mentions={"user_ids": ["ou_boss"]},
        card={"text": "**Expense #42**: 120 EUR", "buttons": [
            {"title": "Approve", "url": "https://erp.example.com/42/approve"},
            {"title": "Reject", "url": "https://erp.example.com/42/reject"}]}))

    assert result.detail == "sent as interactive"
    assert bot.received == [{"msg_type": "interactive", "card": {
        "config": {"wide_screen_mode": True},
        "header": {"title": {"tag": "plain_text", "content": "Approval needed"}, "template": "blue"},
        "elements": [
            {"tag": "markdown", "content": "**Expense #42**: 120 EUR\n<at id=ou_boss></at>"},
            {"tag": "action", "actions": [
                {"tag": "button", "text": {"tag": "plain_text", "content": "Approve"},
                 "url": "https://erp.example.com/42/approve", "type": "default"},
                {"tag": "button", "text": {"tag": "plain_text", "content": "Reject"},
                 "url": "https://erp.example.com/42/reject", "type": "default"},
            ]},
        ],
    }}]


def test_card_without_title_or_buttons(httpserver, bot):
    backend(httpserver).send(message(card={"text": "FYI"}))

    assert bot.received[0]["card"] == {"config": {"wide_screen_mode": True},
                                       "elements": [{"tag": "markdown", "content": "FYI"}]}


def test_without_secret_nothing_is_signed(httpserver):
    peer = FeishuBot(secret=None)
    httpserver.expect_request(HOOK).respond_with_handler(peer)

    backend(httpserver, secret=None).send(message(text="hi"))

    assert peer.received == [{"msg_type": "text", "content": {"text": "hi"}}]


def test_legacy_status_code_answer_is_success(httpserver):
    peer = FeishuBot(legacy=True)
    httpserver.expect_request(HOOK).respond_with_handler(peer)

    assert backend(httpserver).send(message(text="hi")).detail == "sent as text"
    assert len(peer.received) == 1


# --- the peer's checks are real ----------------------------------------------------------------
def test_wrong_secret_is_an_account_error(httpserver, bot):
    with pytest.raises(AccountError) as info:
        backend(httpserver, secret="another-secret").send(message(text="hi"))

    assert info.value.code == "19021"
    assert bot.received == []


def test_missing_keyword_is_permanent_for_the_message(httpserver):
    peer = FeishuBot(keywords=("[alert]",))
    httpserver.expect_request(HOOK).respond_with_handler(peer)
    b = backend(httpserver)

    with pytest.raises(PermanentChannelError) as info:
        b.send(message(text="no keyword"))
    b.send(message(text="[alert] disk full"))

    assert type(info.value) is PermanentChannelError
    assert info.value.code == "19024"
    assert len(peer.received) == 1


# --- codes -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("status", "body", "headers", "error", "retry_after"), [
    (200, {"code": 11232, "data": {}, "msg": "frequency limited psm[lark.oapi.app_platform_runtime]appID[1]"},
     None, TransientChannelError, 60),
    (429, {"code": 99991400, "msg": "request trigger frequency limit"}, {"x-ogw-ratelimit-reset": "52"},
     TransientChannelError, 52),
    (200, {"code": 19022, "data": {}, "msg": "Ip Not Allowed"}, None, AccountError, None),
    (200, {"code": 19021, "data": {}, "msg": "sign match fail or timestamp is not within one hour from current time"},
     None, AccountError, None),
    (200, {"code": 19001, "data": {}, "msg": "param invalid: incoming webhook access token invalid"}, None,
     AccountError, None),
    (200, {"code": 19001, "data": {}, "msg": "param invalid: msg_type invalid"}, None, PermanentChannelError, None),
    (400, {"code": 9499, "data": {}, "msg": "Bad Request"}, None, PermanentChannelError, None),
    (200, {"StatusCode": 19024, "StatusMessage": "Key Words Not Found"}, None, PermanentChannelError, None),
])
def test_codes_map_to_outcomes(httpserver, status, body, headers, error, retry_after):
    httpserver.expect_request(HOOK).respond_with_response(reply(body, status=status, headers=headers))

    with pytest.raises(error) as info:
        backend(httpserver).send(message(text="hi"))

    assert type(info.value) is error
    assert info.value.code == str(body.get("code", body.get("StatusCode")))
    assert info.value.status == status
    if error is TransientChannelError:
        assert info.value.retry_after == retry_after


def test_unknown_token_path_is_an_account_error(httpserver, bot):
    b = FeishuBackend(options=FeishuBackend.validate_options(
        {"webhook_url": httpserver.url_for("/open-apis/bot/v2/hook/00000000-dead-beef"), "secret": SECRET}))

    with pytest.raises(AccountError) as info:
        b.send(message(text="hi"))

    assert info.value.code == "19001"
    assert bot.received == []


def test_server_error_without_code_is_transient(httpserver):
    httpserver.expect_request(HOOK).respond_with_data("upstream timeout", status=504)

    with pytest.raises(TransientChannelError) as info:
        backend(httpserver).send(message(text="hi"))

    assert info.value.status == 504


# --- options -----------------------------------------------------------------------------------
GOOD_URL = "https://open.feishu.cn" + HOOK


@pytest.mark.parametrize(("data", "field", "says"), [
    ({}, "webhook_url", "required"),
    ({"webhook_url": "https://open.feishu.cn/open-apis/bot/v2/hook/"}, "webhook_url", "/open-apis/bot/v2/hook/"),
    ({"webhook_url": "https://open.feishu.cn/open-apis/im/v1/messages"}, "webhook_url", "/open-apis/bot/v2/hook/"),
    ({"webhook_url": GOOD_URL, "secret": "has space"}, "secret", "no spaces"),
    ({"webhook_url": GOOD_URL, "post_locale": "fr_fr"}, "post_locale", "valid choice"),
])
def test_bad_options_name_the_field(data, field, says):
    with pytest.raises(ValidationError) as info:
        FeishuBackend.validate_options(data)

    assert set(info.value.detail) == {field}
    assert says in str(info.value.detail[field][0])


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[])
def test_private_webhook_url_is_refused():
    with pytest.raises(ValidationError) as info:
        FeishuBackend.validate_options({"webhook_url": "http://192.168.1.10" + HOOK})

    assert set(info.value.detail) == {"webhook_url"}


def test_good_options():
    options = FeishuBackend.validate_options({"webhook_url": GOOD_URL, "secret": SECRET})

    assert options == {"webhook_url": GOOD_URL, "secret": SECRET, "timeout": 10.0, "post_locale": "zh_cn"}
    assert FeishuBackend.secret_fields == {"webhook_url", "secret"}
    assert FeishuBackend.default_rate == "5/s"
