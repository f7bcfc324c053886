"""DingTalk (钉钉) custom group robot (自定义机器人), per DingTalk's "custom robot access" and
"custom robot security settings" documents.

``POST {webhook_url}&timestamp=<ms>&sign=<sign>`` with a UTF-8 JSON body of msgtype ``text``,
``markdown`` or ``actionCard``. With the 加签 (signing) security setting, ``sign`` is the
URL-encoded base64 of HMAC-SHA256 keyed with the ``SEC…`` secret over ``"{timestamp}\\n{secret}"``,
the timestamp in milliseconds and within one hour of DingTalk's clock. DingTalk answers HTTP 200
with ``{"errcode": 0, "errmsg": "ok"}`` or an error code, so errors are read from the body.

A small client rather than a library: the protocol is one signed POST, and the maintained
SDKs cover DingTalk's app APIs, not this webhook.
"""
import base64
import hashlib
import hmac
import time
from urllib.parse import urlencode, urlsplit

import requests
from rest_framework import serializers

from channels_app.backends.chat_common import (
    ChatRobotBackend,
    RobotOptions,
    card_markdown,
    card_of,
    check_webhook_url,
    mentions_of,
    present,
    richest,
    title_of,
)
from channels_app.errors import AccountError, ChannelError, PermanentChannelError, TransientChannelError
from channels_app.message import OutboundMessage, SendResult

SECRET_PREFIX = "SEC"  # noqa: S105 — the prefix DingTalk gives signing secrets, not a secret
#: Over 20 messages a minute DingTalk throttles the robot for 10 minutes (custom robot limits).
THROTTLED_SECONDS = 600
THROTTLED = {130101: "send too fast", 410100: "send too fast"}
TOKEN_GONE = {300001: "token is not exist", 300005: "token is not exist", 400101: "access_token does not exist"}
ROBOT_GONE = {400013: "the group was dissolved", 400102: "the robot is disabled", 400106: "the robot does not exist"}
SECURITY = 310000


def sign(secret: str, timestamp_ms: int) -> str:
    """base64(HMAC-SHA256(key=secret, msg="{timestamp}\\n{secret}")), before URL-encoding."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def signed_url(webhook_url: str, secret: str, timestamp_ms: int) -> str:
    separator = "&" if urlsplit(webhook_url).query else "?"
    return webhook_url + separator + urlencode({"timestamp": timestamp_ms, "sign": sign(secret, timestamp_ms)})


def error_for(errcode: int, errmsg: str, *, status: int, response: str) -> ChannelError:
    """Map a DingTalk errcode (and, for 310000, its errmsg) to the outcome."""
    kwargs = {"code": str(errcode), "status": status, "response": response}
    said = f"DingTalk errcode {errcode}: {errmsg}"
    if errcode in THROTTLED:
        return TransientChannelError(f"{said} (the robot is throttled for 10 minutes)",
                                     retry_after=THROTTLED_SECONDS, **kwargs)
    if errcode == -1:
        return TransientChannelError(f"{said} (DingTalk busy)", **kwargs)
    if errcode in TOKEN_GONE or errcode in ROBOT_GONE:
        reason = TOKEN_GONE.get(errcode) or ROBOT_GONE[errcode]
        return AccountError(f"{said} ({reason}: copy the robot's webhook URL again)", **kwargs)
    if errcode == SECURITY:
        return security_error(said, errmsg, kwargs)
    return PermanentChannelError(said, **kwargs)


def security_error(said: str, errmsg: str, kwargs: dict) -> ChannelError:
    """310000 covers three security settings; only a missing keyword is this message's fault."""
    lowered = errmsg.lower()
    if "keyword" in lowered or "关键词" in errmsg:
        return PermanentChannelError(f"{said} (the message lacks the robot's custom keyword)", **kwargs)
    if "sign" in lowered or "签名" in errmsg:
        return AccountError(f"{said} (signature rejected: check the account's secret)", **kwargs)
    if "timestamp" in lowered or "时间戳" in errmsg:
        return AccountError(f"{said} (timestamp rejected: the server clock is off by over an hour)", **kwargs)
    if "whitelist" in lowered or "白名单" in errmsg:
        return AccountError(f"{said} (this server's IP is not in the robot's whitelist)", **kwargs)
    return AccountError(f"{said} (the robot's security settings refused the message)", **kwargs)


class DingTalkOptions(RobotOptions):
    webhook_url = serializers.URLField(
        max_length=2000,
        help_text="Secret. The robot's Webhook, https://oapi.dingtalk.com/robot/send?access_token=...",
    )
    secret = serializers.CharField(
        required=False, allow_blank=True, default="",
        help_text="Secret. The SEC... key of the robot's 加签 (signing) security setting; "
                  "blank when the robot uses keywords or an IP whitelist instead.",
    )

    def validate_webhook_url(self, value):
        return check_webhook_url(value, path="/robot/send", query="access_token")

    def validate_secret(self, value):
        value = value.strip()
        if value and (not value.startswith(SECRET_PREFIX) or any(c.isspace() for c in value)):
            raise serializers.ValidationError("DingTalk signing secrets start with SEC and have no spaces.")
        return value


class DingTalkBackend(ChatRobotBackend):
    name = "dingtalk"
    label = "DingTalk group robot"
    Options = DingTalkOptions
    secret_fields = frozenset({"webhook_url", "secret"})
    default_rate = "20/m"

    def send(self, message: OutboundMessage) -> SendResult:
        payload, sent_as = build_payload(message.content)
        url = self.options["webhook_url"]
        if self.options.get("secret"):
            url = signed_url(url, self.options["secret"], int(time.time() * 1000))
        self.post_json(url, payload)
        return SendResult(detail=f"sent as {sent_as}")

    def raise_for_status(self, response: requests.Response) -> None:
        self.raise_for_errcode(response, "DingTalk", error_for)


def build_payload(content) -> tuple[dict, str]:
    """The robot message for the content, and the msgtype chosen.

    actionCard carries no ``at`` and needs a button: with mentions (or no buttons) the content's
    markdown is sent instead, or the card itself rendered as markdown with its buttons as links.
    """
    mentions = mentions_of(content)
    chosen = richest(content, ("card", "markdown", "text"), "DingTalk")
    card = card_of(content)
    if chosen == "card" and card.buttons and not mentions:
        return action_card(content, card), "actionCard"
    if chosen in ("card", "markdown"):
        text = str(content["markdown"]) if present(content, "markdown") else card_markdown(card)
        text = with_mention_tokens(text, mentions, separator="\n\n")
        payload = {"msgtype": "markdown", "markdown": {"title": title_of(content, text), "text": text}}
        sent_as = "markdown"
    else:
        text = with_mention_tokens(str(content["text"]), mentions, separator="\n")
        payload = {"msgtype": "text", "text": {"content": text}}
        sent_as = "text"
    if mentions:
        payload["at"] = {"atMobiles": list(mentions.mobiles), "atUserIds": list(mentions.user_ids),
                         "isAtAll": mentions.all}
    return payload, sent_as


def with_mention_tokens(text: str, mentions, *, separator: str) -> str:
    """DingTalk highlights an @ only where ``@mobile``/``@userId`` appears in the text: add missing ones."""
    missing = [f"@{who}" for who in (*mentions.mobiles, *mentions.user_ids) if f"@{who}" not in text]
    return f"{text}{separator}{' '.join(missing)}" if missing else text


def action_card(content, card) -> dict:
    body = {"title": title_of(content, card.text), "text": card.text, "btnOrientation": "0"}
    if len(card.buttons) == 1:
        (title, url), = card.buttons
        body.update(singleTitle=title, singleURL=url)
    else:
        body["btns"] = [{"title": title, "actionURL": url} for title, url in card.buttons]
    return {"msgtype": "actionCard", "actionCard": body}
