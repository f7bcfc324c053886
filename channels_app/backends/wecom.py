"""WeCom (企业微信) group robot (群机器人), per WeCom's "群机器人配置说明".

``POST https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY`` with JSON of msgtype ``text``
(``content`` up to 2048 bytes, ``mentioned_list`` of userids, ``mentioned_mobile_list``, ``@all``
in either) or ``markdown`` (``content`` up to 4096 bytes, ``<@userid>`` mentions only). No
signing: the key in the URL is the credential. WeCom answers ``{"errcode": 0, "errmsg": "ok"}``
or an error code, with HTTP 200.

A small client rather than a library: one POST, and the WeCom SDKs target app messaging.
"""
import requests
from rest_framework import serializers

from channels_app.backends.chat_common import (
    ChatRobotBackend,
    RobotOptions,
    card_markdown,
    card_of,
    check_webhook_url,
    mentions_of,
    not_mentioned,
    present,
    richest,
)
from channels_app.errors import AccountError, ChannelError, PermanentChannelError, TransientChannelError
from channels_app.message import OutboundMessage, SendResult

#: Each robot may send 20 messages a minute; past that WeCom answers 45009 until the minute ends.
RATE_LIMITED_SECONDS = 60


def error_for(errcode: int, errmsg: str, *, status: int, response: str) -> ChannelError:
    kwargs = {"code": str(errcode), "status": status, "response": response}
    said = f"WeCom errcode {errcode}: {errmsg}"
    if errcode == 45009:
        return TransientChannelError(f"{said} (over 20 messages a minute)", retry_after=RATE_LIMITED_SECONDS, **kwargs)
    if errcode == -1:
        return TransientChannelError(f"{said} (WeCom busy)", **kwargs)
    if errcode == 93000:
        return AccountError(f"{said} (the webhook key is invalid or the robot was removed)", **kwargs)
    return PermanentChannelError(said, **kwargs)


class WeComOptions(RobotOptions):
    webhook_url = serializers.URLField(
        max_length=2000,
        help_text="Secret. The robot's webhook, https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=...",
    )

    def validate_webhook_url(self, value):
        return check_webhook_url(value, path="/cgi-bin/webhook/send", query="key")


class WeComBackend(ChatRobotBackend):
    name = "wecom"
    label = "WeCom (企业微信) group robot"
    Options = WeComOptions
    default_rate = "20/m"

    def send(self, message: OutboundMessage) -> SendResult:
        payload, sent_as, note = build_payload(message.content)
        self.post_json(self.options["webhook_url"], payload)
        return SendResult(detail="; ".join(filter(None, [f"sent as {sent_as}", note])))

    def raise_for_status(self, response: requests.Response) -> None:
        self.raise_for_errcode(response, "WeCom", error_for)


def build_payload(content) -> tuple[dict, str, str]:
    """The robot message, the msgtype chosen and a note on mentions that could not be made.

    WeCom robots have no card here: a card goes as markdown with its buttons as links. Markdown
    mentions only by userid, so mentions by phone number or of everyone step down to the
    content's text when it has one.
    """
    mentions = mentions_of(content)
    chosen = richest(content, ("card", "markdown", "text"), "WeCom")
    markdown_cannot = bool(mentions.mobiles or mentions.all)
    if chosen == "text" or (markdown_cannot and present(content, "text")):
        body = {"content": str(content["text"])}
        if mentions.user_ids or mentions.all:
            body["mentioned_list"] = [*mentions.user_ids, *(["@all"] if mentions.all else [])]
        if mentions.mobiles:
            body["mentioned_mobile_list"] = list(mentions.mobiles)
        return {"msgtype": "text", "text": body}, "text", ""
    text = str(content["markdown"]) if chosen == "markdown" else card_markdown(card_of(content))
    title = str(content.get("title") or "")
    if title:
        text = f"**{title}**\n{text}"
    if mentions.user_ids:
        text += "\n" + " ".join(f"<@{user_id}>" for user_id in mentions.user_ids)
    note = not_mentioned("WeCom markdown", mobiles=mentions.mobiles, everyone=mentions.all)
    return {"msgtype": "markdown", "markdown": {"content": text}}, "markdown", note
