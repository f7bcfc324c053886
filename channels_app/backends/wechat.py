"""WeChat: Official Account template messages and Mini Program subscribe messages.

Implements, from developers.weixin.qq.com: *sendTemplateMessage* (服务号/公众号模板消息,
``POST /cgi-bin/message/template/send``) and *subscribeMessage.send* (小程序订阅消息,
``POST /cgi-bin/message/subscribe/send``). The address is the recipient's openid, which is
only valid for one appid, so a contact point's ``app`` is the appid it belongs to. The access
token and the mapping of WeChat's ``errcode`` answers are in ``wechat_token.py``.
"""
import re
from collections.abc import Mapping

from rest_framework import serializers

from channels_app.backends.wechat_token import DEFAULT_API_BASE, WeChatApiBackend
from channels_app.errors import InvalidAddressError, PermanentChannelError
from channels_app.kinds import ChannelKind
from channels_app.message import OutboundMessage, SendResult
from channels_app.netguard import BlockedURLError, check_outbound_url

TEMPLATE_SEND_PATH = "/cgi-bin/message/template/send"
SUBSCRIBE_SEND_PATH = "/cgi-bin/message/subscribe/send"
APP_ID = re.compile(r"wx[0-9a-f]{16}")
APP_SECRET = re.compile(r"[0-9a-f]{32}")
OPENID = re.compile(r"[A-Za-z0-9_-]{10,64}")
MINIPROGRAM_STATES = ("developer", "trial", "formal")
LANGUAGES = ("zh_CN", "en_US", "zh_HK", "zh_TW")


class WeChatOptions(serializers.Serializer):
    app_id = serializers.CharField(help_text="AppID: wx followed by 16 hex characters.")
    app_secret = serializers.CharField(help_text="Secret. AppSecret: 32 hex characters.")
    api_base = serializers.URLField(default=DEFAULT_API_BASE, help_text="WeChat API base URL.")

    def validate_app_id(self, value):
        value = value.strip()
        if not APP_ID.fullmatch(value):
            raise serializers.ValidationError("An AppID is wx followed by 16 hex characters, e.g. wx0123456789abcdef.")
        return value

    def validate_app_secret(self, value):
        value = value.strip()
        if not APP_SECRET.fullmatch(value.lower()):
            raise serializers.ValidationError("An AppSecret is 32 hex characters.")
        return value

    def validate_api_base(self, value):
        try:
            check_outbound_url(value, resolve=False)
        except BlockedURLError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value.rstrip("/")


class WeChatMiniProgramOptions(WeChatOptions):
    miniprogram_state = serializers.ChoiceField(
        choices=MINIPROGRAM_STATES, default="formal",
        help_text="Which version of the mini program the message opens, unless the template says.")
    lang = serializers.ChoiceField(choices=LANGUAGES, default="zh_CN",
                                   help_text='Language of the "enter the mini program" link.')


def _template_id(content: Mapping) -> str:
    template_id = str(content.get("template_id") or "").strip()
    if not template_id:
        raise PermanentChannelError("The wechat content has no template_id.", code="no_template_id")
    return template_id


def _template_data(content: Mapping) -> dict:
    """``{"field": "text"}`` from the template becomes WeChat's ``{"field": {"value": "text"}}``."""
    data = content.get("data") or {}
    if not isinstance(data, Mapping):
        raise PermanentChannelError("The wechat content's data must be an object of field: text.",
                                    code="invalid_content")
    return {str(field): {"value": "" if value is None else str(value)} for field, value in data.items()}


class _WeChatMessageBackend(WeChatApiBackend):
    kind = ChannelKind.WECHAT
    secret_fields = frozenset({"app_secret"})
    #: WeChat's limits are daily quotas (see docs/channels/wechat.md), not a sending rate;
    #: an exhausted quota (45009) is retried after midnight Beijing time.
    default_rate = ""

    @classmethod
    def validate_address(cls, address: str) -> str:
        openid = address.strip()
        if not OPENID.fullmatch(openid):
            raise InvalidAddressError(f"{address!r} is not a WeChat openid.", code="invalid_openid")
        return openid


class WeChatOfficialAccountBackend(_WeChatMessageBackend):
    name = "wechat_oa"
    label = "WeChat Official Account (template message)"
    Options = WeChatOptions

    def send(self, message: OutboundMessage) -> SendResult:
        content = message.content
        payload = {
            "touser": message.address,
            "template_id": _template_id(content),
            "client_msg_id": message.delivery_id,  # WeChat drops a repeat of openid + id (10 minutes)
            "data": _template_data(content),
        }
        if content.get("url"):
            payload["url"] = str(content["url"])
        if content.get("miniprogram"):
            payload["miniprogram"] = self._miniprogram(content["miniprogram"])
        body = self.call(TEMPLATE_SEND_PATH, payload)
        msgid = body.get("msgid")
        return SendResult(provider_message_id="" if msgid is None else str(msgid), detail=body.get("errmsg", ""))

    @staticmethod
    def _miniprogram(value) -> dict:
        if not isinstance(value, Mapping) or not value.get("appid"):
            raise PermanentChannelError('miniprogram must be {"appid": "...", "pagepath": "..."}.',
                                        code="invalid_content")
        miniprogram = {"appid": str(value["appid"])}
        if value.get("pagepath"):
            miniprogram["pagepath"] = str(value["pagepath"])
        return miniprogram


class WeChatMiniProgramBackend(_WeChatMessageBackend):
    name = "wechat_mp"
    label = "WeChat Mini Program (subscribe message)"
    Options = WeChatMiniProgramOptions

    def send(self, message: OutboundMessage) -> SendResult:
        content = message.content
        state = content.get("miniprogram_state") or self.options.get("miniprogram_state", "formal")
        if state not in MINIPROGRAM_STATES:
            raise PermanentChannelError(f"miniprogram_state must be one of {', '.join(MINIPROGRAM_STATES)}.",
                                        code="invalid_content")
        payload = {
            "touser": message.address,
            "template_id": _template_id(content),
            "miniprogram_state": state,
            "lang": self.options.get("lang", "zh_CN"),
            "data": _template_data(content),
        }
        if content.get("page"):
            payload["page"] = str(content["page"])
        body = self.call(SUBSCRIBE_SEND_PATH, payload)
        msgid = body.get("msgid")  # not documented for subscribe messages; kept if WeChat sends one
        return SendResult(provider_message_id="" if msgid is None else str(msgid), detail=body.get("errmsg", ""))
