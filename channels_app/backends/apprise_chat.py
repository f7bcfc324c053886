"""The long tail of chat services through Apprise (github.com/caronc/apprise): Telegram, Discord,
Microsoft Teams, ntfy, Matrix, Mattermost, Rocket.Chat, Gotify, generic JSON/XML/form webhooks...

An account holds one or more Apprise URLs; a message goes to all of them with its title and body
(markdown when the content has markdown or a card). Apprise does not tell a permanent refusal
from a passing failure, so any unsuccessful notify() is transient; the detail names each failed
service (by Apprise's privacy-masked URL) with the warnings Apprise logged for it, taken from the
per-call result rather than ``LogCapture``, whose global logger handler would mix up the logs of
concurrent sends.

Apprise makes its own requests, so the outbound URL policy is applied here, to the server each
plugin will contact (:func:`target_hosts`): the ``{host}`` of schemes whose URL names a server
(json, xml, form, self-hosted ntfy, Gotify, Matrix, Mattermost, Teams workflows, mailto's SMTP
server...), the organisation host of Zulip, the endpoint of Azure Communication Services. Those
are checked when the account is saved. A scheme whose plugin posts to fixed provider hosts only
(Telegram, Discord, Slack...) needs no check on save; a scheme where notifyhub cannot tell which
server will be contacted is refused. Before each send every host a plugin will contact (named or
fixed, :func:`contacted_hosts`) is resolved once and checked, and Apprise's ``requests`` run
inside :func:`channels_app.outbound.pinned_hosts`: each connection goes to the address that was
checked (a rebinding DNS server gets no second question) and a connection to any other host is
refused. Redirects are switched off for every plugin, whatever its URL says.

Apprise logs unparseable URLs verbatim, tokens included; :class:`RedactURLs` masks every URL in
its log records (:mod:`channels_app.logredact`).
"""
import re
from urllib.parse import urlsplit

import apprise
from apprise.exception import AppriseException
from rest_framework import serializers

from channels_app.backends.chat_common import card_markdown, card_of, mentions_of, not_mentioned, richest
from channels_app.base import ChannelBackend
from channels_app.errors import PermanentChannelError, TransientChannelError
from channels_app.kinds import ChannelKind
from channels_app.message import OutboundMessage, SendResult
from channels_app.netguard import BlockedURLError, Resolver, UnresolvableHostError, check_outbound_url, resolve_checked
from channels_app.outbound import pinned_hosts

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
        hosts = target_hosts(plugin)
        if hosts is None:
            scheme = url.partition("://")[0].lower()
            raise ValueError(f"URL {number} ({scheme}://…): notifyhub cannot tell which server this Apprise "
                             "service contacts, so it is not allowed.")
        for host in hosts:
            check_outbound_url(f"{'https' if getattr(plugin, 'secure', False) else 'http'}://{host}/",
                               resolve=resolve)
        plugin.redirects = False  # a redirect could lead anywhere; a 3xx is a failure
        plugins.append(plugin)
    return plugins


def contacted_hosts(plugin) -> list[str]:
    """The servers a plugin (that :func:`services` accepted) will contact: its configurable ones,
    else the hosts of its fixed provider endpoints."""
    hosts = target_hosts(plugin) or [urlsplit(getattr(type(plugin), name)).hostname
                                     for name in dir(type(plugin)) if name.endswith(ENDPOINT_ATTRIBUTES)
                                     and isinstance(getattr(type(plugin), name), str)]
    return [host.strip("[]").lower() for host in hosts if host]


def checked_addresses(plugins, *, resolver: Resolver | None = None) -> dict[str, str]:
    """Each contacted host with the address to connect to, resolved once and checked."""
    hosts = {host: 443 if getattr(plugin, "secure", False) else 80
             for plugin in plugins for host in contacted_hosts(plugin)}
    return {host: resolve_checked(host, port, resolver=resolver)[0] for host, port in hosts.items()}


#: Class attributes (``cloud_notify_url``, ``webhook_url``...) where plugins keep provider endpoints.
ENDPOINT_ATTRIBUTES = ("notify_url", "api_url", "webhook_url")


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def target_hosts(plugin) -> list[str] | None:
    """The configurable servers a plugin will contact: ``[]`` when it posts only to fixed
    provider hosts, ``None`` when it cannot be told."""
    if getattr(plugin, "secure_protocol", None) == "zulip" or type(plugin).__name__ == "NotifyZulip":
        return [f"{plugin.organization}.{plugin.hostname}"]
    if type(plugin).__name__ == "NotifyAzureCommunicationServices" or hasattr(plugin, "notify_path") and \
            isinstance(getattr(plugin, "endpoint", None), str):
        return [_bracketed(plugin.endpoint)]
    if any("{host}" in template for template in getattr(plugin, "templates", ())):
        host = getattr(plugin, "smtp_host", "") or getattr(plugin, "host", "") or ""
        if host:
            return [_bracketed(host)]
        # no host given: the plugin's default server (ntfy.sh), checked below like fixed ones
    endpoints = [getattr(type(plugin), name) for name in dir(type(plugin)) if name.endswith(ENDPOINT_ATTRIBUTES)]
    endpoints = [e for e in endpoints if isinstance(e, str)]
    if endpoints and all(_fixed_https_host(e) for e in endpoints):
        return []
    return None


def _fixed_https_host(url: str) -> bool:
    """``https://api.example.com/{token}`` is fixed; ``https://{org}.example.com/`` is not."""
    if not url.startswith(("https://", "http://")):
        return False
    authority = url.split("://", 1)[1].split("/", 1)[0]
    return bool(authority) and "{" not in authority and bool(urlsplit(url).hostname)




class AppriseBackend(ChannelBackend):
    kind = ChannelKind.CHAT
    name = "apprise"
    label = "Apprise (Telegram, Discord, Teams, ntfy, Matrix…)"
    Options = AppriseOptions
    secret_fields = frozenset({"urls"})

    def __init__(self, *, resolver: Resolver | None = None, **kwargs):
        super().__init__(**kwargs)
        self.resolver = resolver  # how host names resolve (the system resolver by default); see netguard

    @classmethod
    def validate_address(cls, address: str) -> str:
        """A label only: the account's URLs say where messages go."""
        return address.strip()

    def send(self, message: OutboundMessage) -> SendResult:
        body, body_format = message_body(message.content)
        mentions = mentions_of(message.content)
        try:
            plugins = services(self.options["urls"], resolve=False)
            pins = checked_addresses(plugins, resolver=self.resolver)
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
            with pinned_hosts(pins):
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
