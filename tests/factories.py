"""Small builders for domain objects; keyword arguments override the defaults."""
import itertools

from channels_app.backends.webhook import generate_secret
from channels_app.models import ChannelConfig
from channels_app.services import channel_config_save
from notifyhub.clients.services import api_key_create
from notifyhub.messaging.models import Template
from preferences.models import Category, ContactPoint, Recipient

_seq = itertools.count(1)


def category(**kw) -> Category:
    n = next(_seq)
    return Category.objects.create(**{"key": f"cat-{n}", "name": f"Category {n}", **kw})


def template(**kw) -> Template:
    kw.setdefault("category", kw.get("category") or category())
    content = {
        "email": {"subject": "Hello {{ name }}", "text": "Hi {{ name }}, code {{ code }}.",
                  "html": "<p>Hi <b>{{ name }}</b>, code {{ code }}.</p>"},
        "inapp": {"title": "Hello {{ name }}", "body": "Code {{ code }}", "url": "/codes"},
        "webhook": {"payload": {"event": "code", "name": "{{ name }}", "code": "{{ code }}"}},
    }
    return Template.objects.create(**{"key": f"tpl-{next(_seq)}", "name": "Test", "variables": ["name", "code"],
                                      "content": content, **kw})


def recipient(*, email: str | None = "", phone: str | None = None, webhook: str | None = None, **kw) -> Recipient:
    n = next(_seq)
    r = Recipient.objects.create(**{"external_id": f"user-{n}", "name": f"User {n}", **kw})
    if email == "":
        email = f"user{n}@example.com"
    for kind, address in (("email", email), ("sms", phone), ("webhook", webhook)):
        if address:
            ContactPoint.objects.create(recipient=r, kind=kind, address=address)
    return r


def channel(*, name: str | None = None, kind: str, backend: str, options: dict | None = None,
            secrets: dict | None = None, **kw) -> ChannelConfig:
    config = ChannelConfig(name=name or f"{backend}-{next(_seq)}", kind=kind, backend=backend,
                           options=options or {}, **kw)
    return channel_config_save(config=config, secrets=secrets or {})


def smtp_channel(port: int, **kw) -> ChannelConfig:
    return channel(kind="email", backend="smtp", options={
        "host": "127.0.0.1", "port": port, "security": "none", "from_email": "hub@example.com", "timeout": 5}, **kw)


def webhook_channel(url: str, secret: str | None = None, **kw) -> ChannelConfig:
    return channel(kind="webhook", backend="webhook", options={"url": url, "timeout": 5},
                   secrets={"signing_secret": secret or generate_secret()}, **kw)


def inapp_channel(**kw) -> ChannelConfig:
    return channel(kind="inapp", backend="inapp", **kw)


def api_key(*, scopes=("send", "read", "manage"), name: str = "test"):
    return api_key_create(name=name, scopes=scopes)
