"""What a template holds for each channel kind, shared by every backend of that kind.

A template's ``content`` is keyed by channel kind; each entry is an object of parts, every
string rendered in the sandbox with the message context. One shape per kind lets an operator
switch provider (Twilio to Aliyun, DingTalk to Feishu) without rewriting templates; parts a
provider has no use for are ignored by it.
"""
from collections.abc import Mapping

from channels_app.kinds import ChannelKind

#: kind -> {part: what it is}
CONTENT_PARTS: dict[str, dict[str, str]] = {
    ChannelKind.EMAIL: {
        "subject": "Subject line.",
        "text": "Plain-text body.",
        "html": "HTML body (autoescaped).",
    },
    ChannelKind.SMS: {
        "text": "Message text (Twilio, and any provider that takes free text).",
        "template_code": "Provider template: Aliyun TemplateCode or Tencent TemplateId.",
        "template_params": "Provider template parameters: an object for Aliyun, a list (in order) "
                           "or an object (values in order) for Tencent.",
        "sign_name": "Optional signature overriding the account's (Aliyun SignName, Tencent SignName).",
    },
    ChannelKind.PUSH: {
        "title": "Notification title.",
        "body": "Notification body.",
        "data": "Object of string keys and values delivered to the app.",
        "image": "Image URL.",
        "url": "URL opened when the notification is tapped (Web Push, FCM link).",
        "badge": "Badge count (APNs).",
        "sound": "Sound name (APNs, FCM).",
        "collapse_key": "Replaces an earlier notification with the same key (apns-collapse-id, FCM collapse_key).",
    },
    ChannelKind.INAPP: {
        "title": "Inbox title.",
        "body": "Inbox body.",
        "url": "Link opened from the inbox.",
        "data": "Extra object stored with the entry.",
    },
    ChannelKind.WECHAT: {
        "template_id": "WeChat template id (Official Account) or subscribe template id (Mini Program).",
        "data": 'Field mapping, e.g. {"thing1": "{{ order_name }}", "time2": "{{ when }}"}.',
        "url": "Official Account: page opened from the message.",
        "miniprogram": 'Official Account: {"appid": "...", "pagepath": "..."} to open a mini program.',
        "page": "Mini Program: page opened from the message.",
        "miniprogram_state": "Mini Program: developer, trial or formal.",
    },
    ChannelKind.CHAT: {
        "text": "Plain text.",
        "markdown": "Markdown text (DingTalk, Feishu post, WeCom, Slack mrkdwn).",
        "title": "Title for markdown and cards.",
        "card": 'Card: {"text": "...", "buttons": [{"title": "...", "url": "..."}]} '
                "(DingTalk actionCard, Feishu interactive card).",
        "blocks": "Slack Block Kit blocks (a list).",
        "mentions": 'People to mention: {"mobiles": [...], "user_ids": [...], "all": false}.',
    },
    ChannelKind.WEBHOOK: {
        "payload": "The JSON object sent as the event's data.",
    },
}

#: kind -> groups of parts of which at least one must be present
REQUIRED_ANY: dict[str, tuple[str, ...]] = {
    ChannelKind.EMAIL: ("subject",),
    ChannelKind.SMS: ("text", "template_code"),
    ChannelKind.PUSH: ("title", "body"),
    ChannelKind.INAPP: ("title", "body"),
    ChannelKind.WECHAT: ("template_id",),
    ChannelKind.CHAT: ("text", "markdown", "card", "blocks"),
    ChannelKind.WEBHOOK: ("payload",),
}


def content_problems(kind: str, parts: Mapping) -> list[str]:
    """What is wrong with one kind's parts: unknown part names and missing required ones."""
    known = CONTENT_PARTS.get(kind, {})
    problems = [f"unknown part {name!r} (known: {', '.join(known)})" for name in parts if name not in known]
    required = REQUIRED_ANY.get(kind, ())
    if required and not any(parts.get(name) not in (None, "", [], {}) for name in required):
        problems.append(f"needs {' or '.join(required)}")
    return problems
