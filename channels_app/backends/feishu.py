"""Feishu / Lark custom bot (自定义机器人), per Feishu's "Custom bot usage guide".

``POST https://open.feishu.cn/open-apis/bot/v2/hook/<token>`` with JSON ``{"msg_type", "content"}``
(``text`` or rich-text ``post``) or ``{"msg_type": "interactive", "card"}``. With the signature
security setting the body also carries ``timestamp`` (Unix seconds, as a string, within one hour)
and ``sign`` = base64 of HMAC-SHA256 whose *key* is ``"{timestamp}\\n{secret}"`` and whose message
is empty — Feishu's construction, unlike DingTalk's. Feishu answers ``{"code": 0, "msg":
"success", "data": {}}`` (older deployments ``{"StatusCode": 0, "StatusMessage": "success"}``),
errors mostly with HTTP 200 and a non-zero code.

A small client rather than a library: the Lark SDK covers app bots, not this webhook.
"""
import base64
import hashlib
import hmac
import re
import time

import requests
from rest_framework import serializers

from channels_app.backends.chat_common import (
    ChatRobotBackend,
    RobotOptions,
    card_of,
    check_webhook_url,
    json_body,
    mentions_of,
    not_mentioned,
    richest,
)
from channels_app.errors import AccountError, ChannelError, PermanentChannelError, TransientChannelError
from channels_app.http import retry_after_seconds
from channels_app.message import OutboundMessage, SendResult

HOOK_PATH = "/open-apis/bot/v2/hook/"
#: Feishu limits a custom bot to 100 requests a minute and 5 a second; wait out the minute.
RATE_LIMITED_SECONDS = 60
RATE_LIMITED = {11232, 99991400}
ACCOUNT_CODES = {19021: "signature or timestamp rejected: check the secret and the server clock",
                 19022: "this server's IP is not in the bot's whitelist"}
KEYWORDS_MISSING = 19024
PARAM_INVALID = 19001
LOCALES = ("zh_cn", "en_us", "ja_jp")

LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
BOLD = re.compile(r"\*\*(.+?)\*\*")
HEADING = re.compile(r"^#{1,6}\s+(.*)$")


def sign(secret: str, timestamp: int) -> str:
    """base64(HMAC-SHA256(key="{timestamp}\\n{secret}", msg=b""))."""
    digest = hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def error_for(code: int, msg: str, response: requests.Response) -> ChannelError:
    kwargs = {"code": str(code), "status": response.status_code, "response": response.text}
    said = f"Feishu code {code}: {msg}"
    if code in RATE_LIMITED:
        wait = (retry_after_seconds(response.headers.get("x-ogw-ratelimit-reset"))
                or retry_after_seconds(response.headers.get("Retry-After")) or RATE_LIMITED_SECONDS)
        return TransientChannelError(f"{said} (rate limited)", retry_after=wait, **kwargs)
    if code in ACCOUNT_CODES:
        return AccountError(f"{said} ({ACCOUNT_CODES[code]})", **kwargs)
    if code == KEYWORDS_MISSING:
        return PermanentChannelError(f"{said} (the message lacks the bot's custom keyword)", **kwargs)
    if code == PARAM_INVALID and "token" in msg.lower():
        return AccountError(f"{said} (the webhook token is invalid: copy the bot's webhook URL again)", **kwargs)
    if response.status_code >= 500:
        return TransientChannelError(said, **kwargs)
    return PermanentChannelError(said, **kwargs)


class FeishuOptions(RobotOptions):
    webhook_url = serializers.URLField(
        max_length=2000,
        help_text="Secret. The bot's webhook, https://open.feishu.cn/open-apis/bot/v2/hook/... "
                  "(Lark: https://open.larksuite.com/open-apis/bot/v2/hook/...).",
    )
    secret = serializers.CharField(
        required=False, allow_blank=True, default="",
        help_text="Secret. The key of the bot's signature verification (签名校验) setting; blank "
                  "when the bot uses keywords or an IP whitelist instead.",
    )
    post_locale = serializers.ChoiceField(
        choices=LOCALES, default="zh_cn", help_text="Language key of rich-text (post) messages.")

    def validate_webhook_url(self, value):
        return check_webhook_url(value, path_prefix=HOOK_PATH)

    def validate_secret(self, value):
        value = value.strip()
        if any(c.isspace() for c in value):
            raise serializers.ValidationError("The signing secret has no spaces; copy it again.")
        return value


class FeishuBackend(ChatRobotBackend):
    name = "feishu"
    label = "Feishu / Lark group bot"
    Options = FeishuOptions
    secret_fields = frozenset({"webhook_url", "secret"})
    default_rate = "5/s"

    def send(self, message: OutboundMessage) -> SendResult:
        payload, sent_as, note = build_payload(message.content, locale=self.options.get("post_locale", "zh_cn"))
        if self.options.get("secret"):
            timestamp = int(time.time())
            payload = {"timestamp": str(timestamp), "sign": sign(self.options["secret"], timestamp), **payload}
        self.post_json(self.options["webhook_url"], payload)
        return SendResult(detail="; ".join(filter(None, [f"sent as {sent_as}", note])))

    def raise_for_status(self, response: requests.Response) -> None:
        body = json_body(response) or {}
        code = body.get("code", body.get("StatusCode"))
        if code is None:
            super().raise_for_status(response)
            raise self.unexpected(response, "Feishu")
        try:
            code = int(code)
        except (TypeError, ValueError):
            raise self.unexpected(response, "Feishu") from None
        if code != 0:
            raise error_for(code, str(body.get("msg") or body.get("StatusMessage") or ""), response)


def build_payload(content, *, locale: str = "zh_cn") -> tuple[dict, str, str]:
    """The bot message, the msg_type chosen and a note on mentions Feishu cannot make."""
    mentions = mentions_of(content)
    note = not_mentioned("Feishu", mobiles=mentions.mobiles)
    chosen = richest(content, ("card", "markdown", "text"), "Feishu")
    title = str(content.get("title") or "")
    if chosen == "card":
        return {"msg_type": "interactive", "card": interactive_card(card_of(content), title, mentions)}, \
            "interactive", note
    if chosen == "markdown":
        paragraphs = post_paragraphs(str(content["markdown"]))
        ats = [{"tag": "at", "user_id": user_id} for user_id in mentions.user_ids]
        if mentions.all:
            ats.append({"tag": "at", "user_id": "all"})
        if ats:
            paragraphs.append(ats)
        post = {locale: {"title": title, "content": paragraphs}}
        return {"msg_type": "post", "content": {"post": post}}, "post", note
    tags = [f'<at user_id="{user_id}"></at>' for user_id in mentions.user_ids]
    if mentions.all:
        tags.append('<at user_id="all">所有人</at>')
    text = str(content["text"]) + (" " + " ".join(tags) if tags else "")
    return {"msg_type": "text", "content": {"text": text}}, "text", note


def post_paragraphs(markdown: str) -> list[list[dict]]:
    """Markdown as rich-text paragraphs, one per line: links become ``a`` elements, ``**bold**``
    and headings bold text; other markdown stays as typed (a post is not markdown)."""
    paragraphs = []
    for line in markdown.splitlines():
        heading = HEADING.match(line)
        if heading:
            paragraphs.append([{"tag": "text", "text": heading.group(1), "style": ["bold"]}])
            continue
        elements, at = [], 0
        for link in LINK.finditer(line):
            elements += styled_text(line[at:link.start()])
            elements.append({"tag": "a", "text": link.group(1), "href": link.group(2)})
            at = link.end()
        elements += styled_text(line[at:])
        paragraphs.append(elements or [{"tag": "text", "text": ""}])
    return paragraphs


def styled_text(text: str) -> list[dict]:
    elements, at = [], 0
    for bold in BOLD.finditer(text):
        if bold.start() > at:
            elements.append({"tag": "text", "text": text[at:bold.start()]})
        elements.append({"tag": "text", "text": bold.group(1), "style": ["bold"]})
        at = bold.end()
    if at < len(text):
        elements.append({"tag": "text", "text": text[at:]})
    return elements


def interactive_card(card, title: str, mentions) -> dict:
    """A message card: the title as header, the text as a markdown element (where ``<at id=…>``
    mentions work), the buttons as an action row opening their URLs."""
    ats = [f"<at id={user_id}></at>" for user_id in mentions.user_ids] + (["<at id=all></at>"] if mentions.all else [])
    text = card.text + ("\n" + " ".join(ats) if ats else "")
    result = {"config": {"wide_screen_mode": True}, "elements": [{"tag": "markdown", "content": text}]}
    if title:
        result["header"] = {"title": {"tag": "plain_text", "content": title}, "template": "blue"}
    if card.buttons:
        result["elements"].append({"tag": "action", "actions": [
            {"tag": "button", "text": {"tag": "plain_text", "content": label}, "url": url, "type": "default"}
            for label, url in card.buttons
        ]})
    return result
