"""The long tail of chat services through Apprise (github.com/caronc/apprise): Telegram, Discord,
Microsoft Teams, ntfy, Matrix, Mattermost, Rocket.Chat, Gotify, generic JSON/XML/form webhooks...

An account holds one or more Apprise URLs; a message goes to all of them with its title and body
(markdown when the content has markdown or a card). Apprise does not tell a permanent refusal
from a passing failure, so any unsuccessful notify() is transient; the detail names each failed
service (by Apprise's privacy-masked URL) with the warnings Apprise logged for it, taken from the
per-call result rather than ``LogCapture``, whose global logger handler would mix up the logs of
concurrent sends.

Apprise makes its own requests, so the outbound URL policy is applied here: a scheme whose URL
names the server to contact (``{host}`` in the plugin's URL templates: json, xml, form, self-hosted
ntfy, Gotify, Matrix, Mattermost, Teams workflows, mailto's SMTP server...) has that host checked
when the account is saved and again before each send. Other schemes reach their provider's fixed
API host.
"""
import re

import apprise
from apprise.exception import AppriseException
from rest_framework import serializers

from channels_app.backends.chat_common import card_markdown, card_of, mentions_of, not_mentioned, richest
from channels_app.base import ChannelBackend
from channels_app.errors import PermanentChannelError, TransientChannelError
from channels_app.kinds import ChannelKind
from channels_app.message import OutboundMessage, SendResult
from channels_app.netguard import BlockedURLError, UnresolvableHostError, check_outbound_url

URL_SPLIT = re.compile(r"\s+")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]{0,19}://")
#: Apprise may keep per-service state on disk; notifyhub's workers keep none.
ASSET = apprise.AppriseAsset(storage_mode="memory")


class AppriseOptions(serializers.Serializer):
    urls = serializers.CharField(
        help_text="Secret. One or more Apprise URLs separated by spaces or new lines, e.g. "
                  "tgram://bottoken/ChatID, discord://webhook_id/webhook_token, ntfys://ntfy.example.com/alerts.",
    )
    timeout = serializers.FloatField(default=10.0, min_value=0.1, max_value=120,
                                     help_text="Seconds the whole notification may take.")

    def validate_urls(self, value):
        try:
            services(value, resolve=False)
        except (ValueError, BlockedURLError) as exc:
            raise serializers.ValidationError(str(exc)) from None
        return value.strip()


def services(urls: str, *, resolve: bool) -> list:
    """The Apprise plugins for ``urls``, each target host checked; ``ValueError`` names a bad URL
    by its position and scheme only (the URL itself is a secret)."""
    items = [url for url in URL_SPLIT.split(urls.strip()) if url]
    if not items:
        raise ValueError("Enter at least one Apprise URL.")
    plugins = []
    for number, url in enumerate(items, start=1):
        plugin = apprise.Apprise.instantiate(url, asset=ASSET)
        if plugin is None:
            scheme = url.partition("://")[0].lower() if SCHEME.match(url) else "scheme"
            raise ValueError(f"URL {number} ({scheme}://…) is not a valid Apprise URL.")
        host = target_host(plugin)
        if host:
            check_outbound_url(f"{'https' if getattr(plugin, 'secure', False) else 'http'}://{host}/",
                               resolve=resolve)
        plugins.append(plugin)
    return plugins


def target_host(plugin) -> str:
    """The server a URL names ("" for schemes that reach a fixed provider host, or ntfy.sh)."""
    if not any("{host}" in template for template in getattr(plugin, "templates", ())):
        return ""
    host = getattr(plugin, "smtp_host", "") or getattr(plugin, "host", "") or ""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class AppriseBackend(ChannelBackend):
    kind = ChannelKind.CHAT
    name = "apprise"
    label = "Apprise (Telegram, Discord, Teams, ntfy, Matrix…)"
    Options = AppriseOptions
    secret_fields = frozenset({"urls"})

    @classmethod
    def validate_address(cls, address: str) -> str:
        """A label only: the account's URLs say where messages go."""
        return address.strip()

    def send(self, message: OutboundMessage) -> SendResult:
        body, body_format = message_body(message.content)
        mentions = mentions_of(message.content)
        try:
            plugins = services(self.options["urls"], resolve=True)
        except UnresolvableHostError as exc:
            raise TransientChannelError(str(exc), code="dns_failure") from None
        except BlockedURLError as exc:
            raise PermanentChannelError(str(exc), code="blocked_url") from None
        except ValueError as exc:
            raise PermanentChannelError(str(exc), code="invalid_url") from None
        notifier = apprise.Apprise(asset=ASSET)
        for plugin in plugins:
            notifier.add(plugin)
        try:
            result = notifier.notify(body=body, title=str(message.content.get("title") or ""),
                                     body_format=body_format, timeout=self.options.get("timeout") or 0)
        except AppriseException as exc:
            raise TransientChannelError(f"Apprise failed: {exc}", code="apprise_error") from None
        with result:
            outcomes = [(service.name, service.url.split("?")[0], bool(service), last_words(service))
                        for service in result]
            succeeded, status = bool(result), result.status.name
        note = not_mentioned("Apprise", mobiles=mentions.mobiles, user_ids=mentions.user_ids, everyone=mentions.all)
        if succeeded:
            sent = ", ".join(name for name, _, _, _ in outcomes)
            return SendResult(detail="; ".join(filter(None, [f"sent as {body_format} to {sent}", note])))
        failed = [f"{name} {url}: {words or 'failed'}" for name, url, ok, words in outcomes if not ok]
        done = [name for name, _, ok, _ in outcomes if ok]
        detail = "; ".join(failed or [f"status {status}"]) + (f" (delivered to {', '.join(done)})" if done else "")
        raise TransientChannelError(f"Apprise could not notify: {detail}", code="apprise_failed")


def message_body(content) -> tuple[str, str]:
    chosen = richest(content, ("card", "markdown", "text"), "Apprise")
    if chosen == "card":
        return card_markdown(card_of(content)), apprise.NotifyFormat.MARKDOWN.value
    if chosen == "markdown":
        return str(content["markdown"]), apprise.NotifyFormat.MARKDOWN.value
    return str(content["text"]), apprise.NotifyFormat.TEXT.value


def last_words(service, limit: int = 3) -> str:
    """The last warnings Apprise logged for one service (e.g. "... HTTP 500 ...")."""
    messages = [entry.message for entry in service.logs()]
    return " | ".join(messages[-limit:])
