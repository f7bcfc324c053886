"""Slack incoming webhooks, per Slack's "Sending messages using incoming webhooks".

``POST https://hooks.slack.com/services/T…/B…/X…`` with JSON ``{"text", "blocks", "mrkdwn"}``.
Slack answers ``200 ok``; failures are HTTP statuses with a short text code in the body
(``400 invalid_payload``, ``403 action_prohibited``, ``404 channel_not_found``,
``410 channel_is_archived``, ``429`` with ``Retry-After``, ``500 rollup_error``). Mentions are
``<@U…>`` for a user and ``<!channel>`` for everyone in the channel.

A small client rather than ``slack_sdk``: one POST, and the hub's session, timeouts and
outbound URL checks apply to it.
"""
import re

import requests
from rest_framework import serializers

from channels_app.backends.chat_common import (
    ChatRobotBackend,
    RobotOptions,
    card_of,
    check_webhook_url,
    invalid_content,
    mentions_of,
    not_mentioned,
    present,
    richest,
)
from channels_app.errors import AccountError, PermanentChannelError
from channels_app.message import OutboundMessage, SendResult

#: 4xx codes that mean this webhook cannot post any more (revoked, channel gone, workspace rules).
ACCOUNT_CODES = frozenset({
    "action_prohibited", "invalid_token", "no_service", "no_team", "team_disabled", "channel_not_found",
    "channel_is_archived", "posting_to_general_channel_denied",
})
ACCOUNT_STATUSES = frozenset({401, 403, 404, 410})
CODE = re.compile(r"^[a-z_]{2,64}$")

LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
BOLD = re.compile(r"\*\*(.+?)\*\*")
STRIKE = re.compile(r"~~(.+?)~~")
HEADING = re.compile(r"^#{1,6}\s+(.*)$", re.MULTILINE)


def mrkdwn(markdown: str) -> str:
    """Common markdown as Slack mrkdwn: ``**b**`` → ``*b*``, ``[t](u)`` → ``<u|t>``, headings bold."""
    text = HEADING.sub(lambda m: f"**{m.group(1)}**", markdown)
    text = BOLD.sub(r"*\1*", text)
    text = STRIKE.sub(r"~\1~", text)
    return LINK.sub(r"<\2|\1>", text)


class SlackOptions(RobotOptions):
    webhook_url = serializers.URLField(
        max_length=2000, help_text="Secret. The incoming webhook URL, https://hooks.slack.com/services/T…/B…/X…")

    def validate_webhook_url(self, value):
        return check_webhook_url(value, path_prefix="/services/")


class SlackBackend(ChatRobotBackend):
    name = "slack"
    label = "Slack incoming webhook"
    Options = SlackOptions
    default_rate = "1/s"

    def send(self, message: OutboundMessage) -> SendResult:
        payload, sent_as, note = build_payload(message.content)
        self.post_json(self.options["webhook_url"], payload)
        return SendResult(detail="; ".join(filter(None, [f"sent as {sent_as}", note])))

    def raise_for_status(self, response: requests.Response) -> None:
        status, body = response.status_code, response.text.strip()
        if 200 <= status < 300:
            if body == "ok":
                return
            raise self.unexpected(response, "Slack")
        if status in (408, 425, 429) or status >= 500:
            super().raise_for_status(response)  # transient, honouring Retry-After
        code = body if CODE.match(body) else f"http_{status}"
        kwargs = {"code": code, "status": status, "response": body}
        if code in ACCOUNT_CODES or status in ACCOUNT_STATUSES:
            raise AccountError(f"Slack refused the webhook: HTTP {status} {body[:100]}", **kwargs)
        raise PermanentChannelError(f"Slack refused the message: HTTP {status} {body[:100]}", **kwargs)


def build_payload(content) -> tuple[dict, str, str]:
    """The webhook body, the format chosen and a note on mentions Slack cannot make."""
    mentions = mentions_of(content)
    note = not_mentioned("Slack", mobiles=mentions.mobiles)
    tags = " ".join([f"<@{user_id}>" for user_id in mentions.user_ids] + (["<!channel>"] if mentions.all else []))
    chosen = richest(content, ("blocks", "card", "markdown", "text"), "Slack")
    title = str(content.get("title") or "")
    if chosen in ("blocks", "card"):
        blocks = list(content["blocks"]) if chosen == "blocks" else card_blocks(card_of(content), title)
        if not all(isinstance(block, dict) for block in blocks):
            raise invalid_content("blocks must be a list of Block Kit objects.")
        if tags:
            blocks.insert(0, {"type": "section", "text": {"type": "mrkdwn", "text": tags}})
        payload = {"blocks": blocks, "mrkdwn": True}
        fallback = fallback_text(content, title)
        if fallback or tags:
            payload["text"] = " ".join(filter(None, [tags, fallback]))
        return payload, chosen, note
    if chosen == "markdown":
        text = mrkdwn(str(content["markdown"]))
        if title:
            text = f"*{title}*\n{text}"
    else:
        text = str(content["text"])
    return {"text": " ".join(filter(None, [tags, text])), "mrkdwn": True}, chosen, note


def fallback_text(content, title: str) -> str:
    """The notification text shown where blocks cannot be (push notifications, old clients)."""
    if present(content, "text"):
        return str(content["text"])
    if present(content, "markdown"):
        return mrkdwn(str(content["markdown"]))
    card = card_of(content)
    return title or (mrkdwn(card.text) if card else "")


def card_blocks(card, title: str) -> list[dict]:
    blocks = []
    if title:
        blocks.append({"type": "header", "text": {"type": "plain_text", "text": title[:150]}})
    if card.text:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn(card.text)}})
    if card.buttons:
        blocks.append({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": label[:75]}, "url": url}
            for label, url in card.buttons
        ]})
    return blocks
