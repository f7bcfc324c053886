"""Slack incoming webhook against a local peer written from Slack's incoming-webhook docs.

The peer checks what Slack checks: POST JSON to /services/T…/B…/X…, a body with ``text`` or
``blocks`` (every block typed), and answers ``200 ok`` or Slack's status + text error codes
(``400 invalid_payload``, ``404 no_service``...). Verified: text/mrkdwn/blocks/card shapes and
mentions, every error class, Retry-After on 429, option validation.
"""
import json
import uuid

import pytest
from django.test import override_settings
from rest_framework.exceptions import ValidationError
from werkzeug import Request, Response

from channels_app.backends.slack import SlackBackend
from channels_app.errors import AccountError, PermanentChannelError, TransientChannelError
from channels_app.message import OutboundMessage, SendResult

HOOK = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"


def slack_says(code: str, status: int) -> Response:
    return Response(code, status=status, content_type="text/html")


class SlackWebhook:
    """An incoming webhook as Slack documents it; ``received`` holds accepted payloads."""

    def __init__(self):
        self.received: list[dict] = []

    def __call__(self, request: Request) -> Response:
        if request.path != HOOK:
            return slack_says("no_service", 404)
        if request.method != "POST" or request.mimetype != "application/json":
            return slack_says("invalid_payload", 400)
        try:
            body = json.loads(request.get_data().decode("utf-8"))
        except ValueError:
            return slack_says("invalid_payload", 400)
        if not body.get("text") and not body.get("blocks"):
            return slack_says("no_text", 400)
        if any(not isinstance(block, dict) or "type" not in block for block in body.get("blocks", [])):
            return slack_says("invalid_blocks", 400)
        self.received.append(body)
        return slack_says("ok", 200)


def backend(server, path: str = HOOK) -> SlackBackend:
    return SlackBackend(options=SlackBackend.validate_options({"webhook_url": server.url_for(path)}))


def message(**content) -> OutboundMessage:
    return OutboundMessage(delivery_id=str(uuid.uuid4()), kind="chat", address="#ops", content=content)


@pytest.fixture
def hook(httpserver):
    import re

    peer = SlackWebhook()
    httpserver.expect_request(re.compile(r"/services/.*")).respond_with_handler(peer)
    return peer


def test_text_with_mentions(httpserver, hook):
    result = backend(httpserver).send(message(
        text="Deploy finished", mentions={"user_ids": ["U024BE7LH"], "all": True, "mobiles": ["+15550100"]}))

    assert result == SendResult(detail="sent as text; not mentioned: mobiles (Slack cannot mention them)")
    assert hook.received == [{"text": "<@U024BE7LH> <!channel> Deploy finished", "mrkdwn": True}]


def test_markdown_is_converted_to_mrkdwn(httpserver, hook):
    backend(httpserver).send(message(
        title="Release 2.4", text="fallback",
        markdown="## Notes\nBuild **passed**, ~~flaky~~ fixed: [CI](https://ci.example.com/42)"))

    assert hook.received == [{"text": "*Release 2.4*\n*Notes*\nBuild *passed*, ~flaky~ fixed: "
                                      "<https://ci.example.com/42|CI>", "mrkdwn": True}]


def test_blocks_win_and_keep_a_fallback_text_and_mentions(httpserver, hook):
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*db-1* is down"}},
              {"type": "divider"}]

    result = backend(httpserver).send(message(
        blocks=blocks, text="db-1 is down", card={"text": "ignored"}, mentions={"user_ids": ["U1"]}))

    assert result.detail == "sent as blocks"
    assert hook.received == [{
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "<@U1>"}}, *blocks],
        "mrkdwn": True,
        "text": "<@U1> db-1 is down",
    }]


def test_card_becomes_blocks(httpserver, hook):
    result = backend(httpserver).send(message(title="Approval needed", card={
        "text": "**Expense #42**: 120 EUR",
        "buttons": [{"title": "Approve", "url": "https://erp.example.com/42/approve"},
                    {"title": "Reject", "url": "https://erp.example.com/42/reject"}]}))

    assert result.detail == "sent as card"
    assert hook.received == [{
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Approval needed"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "*Expense #42*: 120 EUR"}},
            {"type": "actions", "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Approve"},
                 "url": "https://erp.example.com/42/approve"},
                {"type": "button", "text": {"type": "plain_text", "text": "Reject"},
                 "url": "https://erp.example.com/42/reject"},
            ]},
        ],
        "mrkdwn": True,
        "text": "Approval needed",
    }]


def test_blocks_that_are_not_objects_are_a_content_error(httpserver, hook):
    with pytest.raises(PermanentChannelError) as info:
        backend(httpserver).send(message(blocks=["not a block"]))

    assert info.value.code == "invalid_content"
    assert hook.received == []


def test_malformed_block_is_refused_by_the_peer_as_permanent(httpserver, hook):
    with pytest.raises(PermanentChannelError) as info:
        backend(httpserver).send(message(blocks=[{"text": "no type"}]))

    assert type(info.value) is PermanentChannelError
    assert info.value.code == "invalid_blocks"


def test_unknown_webhook_is_an_account_error(httpserver, hook):
    with pytest.raises(AccountError) as info:
        backend(httpserver, path="/services/T00000000/B00000000/revoked").send(message(text="hi"))

    assert info.value.code == "no_service"
    assert info.value.status == 404


def test_429_honours_retry_after(httpserver):
    httpserver.expect_request(HOOK).respond_with_response(
        Response("rate_limited", status=429, headers={"Retry-After": "30"}))

    with pytest.raises(TransientChannelError) as info:
        backend(httpserver).send(message(text="hi"))

    assert info.value.retry_after == 30
    assert info.value.status == 429


@pytest.mark.parametrize(("status", "code", "error"), [
    (400, "invalid_payload", PermanentChannelError),
    (400, "no_text", PermanentChannelError),
    (400, "user_not_found", PermanentChannelError),
    (400, "posting_to_general_channel_denied", AccountError),
    (403, "action_prohibited", AccountError),
    (403, "invalid_token", AccountError),
    (404, "channel_not_found", AccountError),
    (404, "no_team", AccountError),
    (410, "channel_is_archived", AccountError),
    (500, "rollup_error", TransientChannelError),
    (503, "<html>Service Unavailable</html>", TransientChannelError),
])
def test_errors_map_to_outcomes(httpserver, status, code, error):
    httpserver.expect_request(HOOK).respond_with_response(slack_says(code, status))

    with pytest.raises(error) as info:
        backend(httpserver).send(message(text="hi"))

    assert type(info.value) is error
    assert info.value.status == status
    if error is not TransientChannelError:
        assert info.value.code == code


def test_a_200_other_than_ok_is_not_success(httpserver):
    httpserver.expect_request(HOOK).respond_with_data("<html>sign in</html>", status=200)

    with pytest.raises(PermanentChannelError) as info:
        backend(httpserver).send(message(text="hi"))

    assert info.value.code == "unexpected_response"


def test_webhook_secret_is_redacted_from_transport_errors():
    from tests.conftest import free_port

    b = SlackBackend(options={"webhook_url": f"http://127.0.0.1:{free_port()}{HOOK}", "timeout": 2})
    with pytest.raises(TransientChannelError) as info:
        b.send(message(text="hi"))

    assert "XXXXXXXXXXXXXXXXXXXXXXXX" not in info.value.detail


GOOD_URL = "https://hooks.slack.com" + HOOK


@pytest.mark.parametrize(("data", "says"), [
    ({}, "required"),
    ({"webhook_url": "https://hooks.slack.com/workflows/T1/A1/1/x"}, "/services/"),
    ({"webhook_url": "https://hooks.slack.com/services/"}, "/services/"),
    ({"webhook_url": "hooks.slack.com/services/T/B/X"}, "valid URL"),
])
def test_bad_webhook_url_is_named(data, says):
    with pytest.raises(ValidationError) as info:
        SlackBackend.validate_options(data)

    assert set(info.value.detail) == {"webhook_url"}
    assert says in str(info.value.detail["webhook_url"][0])


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[])
def test_private_webhook_url_is_refused():
    with pytest.raises(ValidationError) as info:
        SlackBackend.validate_options({"webhook_url": "http://169.254.169.254" + HOOK})

    assert set(info.value.detail) == {"webhook_url"}


def test_good_options():
    assert SlackBackend.validate_options({"webhook_url": GOOD_URL}) == {"webhook_url": GOOD_URL, "timeout": 10.0}
    assert SlackBackend.default_rate == "1/s"
