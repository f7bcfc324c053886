"""What the chat robots (DingTalk, Feishu, WeCom, Slack, Apprise) share: reading the chat content
parts, mentions, the webhook-URL option, and keeping the robot's secret URL out of error details.

A chat account is one robot that posts into one group. A recipient's chat contact point only
routes a delivery to the account (its ``app`` is the account name); its address is a label for
people (the group's name, say) and is never sent: a robot can only post into its own group.

Formats: each backend sends the richest format it supports that the content has (card >
markdown > text; Slack: blocks first). Mentions are never lost silently: when that format cannot
carry the mentions asked for, the backend steps down to one that can, and mentions a provider
cannot make at all are listed in the delivery's detail.
"""
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

import requests
from rest_framework import serializers

from channels_app.errors import (
    ChannelError,
    PermanentChannelError,
    TransientChannelError,
)
from channels_app.http import HttpChannelBackend
from channels_app.kinds import ChannelKind
from channels_app.netguard import BlockedURLError, check_outbound_url

TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off", ""})


@dataclass(frozen=True, slots=True)
class Mentions:
    """People a message asks to notify: by phone number, by the provider's user id, or everyone."""

    mobiles: tuple[str, ...] = ()
    user_ids: tuple[str, ...] = ()
    all: bool = False

    def __bool__(self) -> bool:
        return bool(self.mobiles or self.user_ids or self.all)


@dataclass(frozen=True, slots=True)
class Card:
    text: str
    buttons: tuple[tuple[str, str], ...] = ()  # (title, url)


def invalid_content(message: str) -> PermanentChannelError:
    """The rendered content cannot be sent as it is: a template bug, so retrying cannot help."""
    return PermanentChannelError(message, code="invalid_content")


def _names(value, part: str) -> tuple[str, ...]:
    """A list of ids; a rendered string of ids separated by commas or spaces is accepted too."""
    if value in (None, ""):
        return ()
    if isinstance(value, str):
        return tuple(item for item in re.split(r"[\s,]+", value) if item)
    if isinstance(value, Sequence):
        if not all(isinstance(item, str | int) for item in value):
            raise invalid_content(f"{part} must be a list of strings.")
        return tuple(str(item).strip() for item in value if str(item).strip())
    raise invalid_content(f"{part} must be a list of strings.")


def _flag(value, part: str) -> bool:
    if isinstance(value, bool) or value is None:
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise invalid_content(f"{part} must be true or false.")


def mentions_of(content: Mapping) -> Mentions:
    raw = content.get("mentions") or {}
    if not isinstance(raw, Mapping):
        raise invalid_content('mentions must be an object: {"mobiles": [...], "user_ids": [...], "all": false}.')
    return Mentions(
        mobiles=_names(raw.get("mobiles"), "mentions.mobiles"),
        user_ids=_names(raw.get("user_ids"), "mentions.user_ids"),
        all=_flag(raw.get("all"), "mentions.all"),
    )


def card_of(content: Mapping) -> Card | None:
    raw = content.get("card")
    if raw in (None, "", {}):
        return None
    if not isinstance(raw, Mapping):
        raise invalid_content('card must be an object: {"text": "...", "buttons": [{"title": "...", "url": "..."}]}.')
    buttons = raw.get("buttons") or []
    if not isinstance(buttons, Sequence) or isinstance(buttons, str):
        raise invalid_content("card.buttons must be a list.")
    parsed = []
    for number, button in enumerate(buttons, start=1):
        if not isinstance(button, Mapping) or not button.get("title") or not button.get("url"):
            raise invalid_content(f"card.buttons[{number}] needs a title and a url.")
        parsed.append((str(button["title"]), str(button["url"])))
    return Card(text=str(raw.get("text") or ""), buttons=tuple(parsed))


def present(content: Mapping, part: str) -> bool:
    return content.get(part) not in (None, "", [], {})


def richest(content: Mapping, order: Sequence[str], provider: str) -> str:
    """The first part of ``order`` the content has; a permanent error when it has none of them."""
    for part in order:
        if present(content, part):
            return part
    raise PermanentChannelError(
        f"{provider} sends {', '.join(order)}; the content has none of them.", code="no_content")


def card_markdown(card: Card) -> str:
    """A card as markdown: its text, then its buttons as links (for robots without cards)."""
    links = "  ".join(f"[{title}]({url})" for title, url in card.buttons)
    return "\n\n".join(part for part in (card.text, links) if part)


def title_of(content: Mapping, body: str, limit: int = 64, fallback: str = "Notification") -> str:
    """The content's title, else the first line of the body without markdown marks, else ``fallback``."""
    title = str(content.get("title") or "").strip()
    if not title:
        first = next((line for line in body.splitlines() if line.strip()), "")
        title = first.strip().lstrip("#>*- ").strip()
    return title[:limit] or fallback


def not_mentioned(provider: str, **missing) -> str:
    """The detail line naming mentions a provider could not make (kinds with a true value)."""
    kinds = [kind for kind, wanted in missing.items() if wanted]
    return f"not mentioned: {', '.join(kinds)} ({provider} cannot mention them)" if kinds else ""


# --- the webhook URL option ---------------------------------------------------------------------
def check_webhook_url(value: str, *, path: str = "", path_prefix: str = "", query: str = "") -> str:
    """Validate a robot webhook URL for an options serializer (``ValidationError`` on failure).

    ``path``/``path_prefix`` is what the provider's URLs look like and ``query`` the parameter
    that carries the robot's token, so that pasting the wrong URL is caught when it is saved.
    """
    try:
        check_outbound_url(value, resolve=False)
    except BlockedURLError as exc:
        raise serializers.ValidationError(str(exc)) from None
    parts = urlsplit(value)
    if path and parts.path.rstrip("/") != path:
        raise serializers.ValidationError(f"Expected a URL whose path is {path}; copy the robot's whole webhook URL.")
    if path_prefix and not (parts.path.startswith(path_prefix) and len(parts.path) > len(path_prefix)):
        raise serializers.ValidationError(
            f"Expected a URL whose path starts with {path_prefix}; copy the robot's whole webhook URL.")
    if query and not dict(parse_qsl(parts.query)).get(query):
        raise serializers.ValidationError(f"The URL has no {query} parameter; copy the robot's whole webhook URL.")
    return value


class RobotOptions(serializers.Serializer):
    webhook_url = serializers.URLField(max_length=2000, help_text="Secret. The robot's webhook URL.")
    timeout = serializers.FloatField(default=10.0, min_value=0.1, max_value=60,
                                     help_text="Seconds to wait for the provider's answer.")


# --- keeping the secret URL out of error details ------------------------------------------------
def url_secrets(url: str) -> list[str]:
    """Parts of a webhook URL that are credentials: query values and long path segments (tokens)."""
    parts = urlsplit(url)
    found = [value for _, value in parse_qsl(parts.query) if len(value) >= 6]
    found += [segment for segment in parts.path.split("/") if len(segment) >= 16]
    if parts.query:
        found.append(parts.query)
    return sorted(set(found), key=len, reverse=True)


def redacted(error: ChannelError, secrets: Sequence[str]) -> ChannelError:
    """The same error with every secret replaced by ``***`` (requests puts the URL in its messages)."""

    def clean(text: str) -> str:
        for secret in secrets:
            text = text.replace(secret, "***")
        return text

    kwargs = {"code": error.code, "status": error.status, "response": clean(error.response)}
    if isinstance(error, TransientChannelError):
        kwargs["retry_after"] = error.retry_after
    return type(error)(clean(str(error)), **kwargs)


def json_body(response: requests.Response) -> dict | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


class ChatRobotBackend(HttpChannelBackend):
    """A robot that posts JSON to its group's webhook URL. Abstract: no ``name``."""

    kind = ChannelKind.CHAT
    Options = RobotOptions
    secret_fields = frozenset({"webhook_url"})

    @classmethod
    def validate_address(cls, address: str) -> str:
        """Any label: the robot posts into its own group whatever the address says."""
        return address.strip()

    def post_json(self, url: str, payload: dict) -> requests.Response:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            return self.post(url, data=body, headers={"Content-Type": "application/json; charset=utf-8"})
        except ChannelError as exc:
            raise redacted(exc, url_secrets(url)) from None

    def raise_for_errcode(self, response: requests.Response, provider: str, error_for) -> None:
        """DingTalk and WeCom answer HTTP 200 with ``{"errcode", "errmsg"}``; ``error_for(code,
        message, status=, response=)`` maps a non-zero code to the provider's channel error."""
        body = json_body(response)
        if body is None or "errcode" not in body:
            super().raise_for_status(response)
            raise self.unexpected(response, provider)
        try:
            errcode = int(body["errcode"])
        except (TypeError, ValueError):
            raise self.unexpected(response, provider) from None
        if errcode != 0:
            raise error_for(errcode, str(body.get("errmsg", "")), status=response.status_code, response=response.text)

    def unexpected(self, response: requests.Response, provider: str) -> PermanentChannelError:
        """A 2xx answer that is not the provider's: the URL points somewhere else."""
        return PermanentChannelError(
            f"HTTP {response.status_code} without {provider}'s result; is the webhook URL right?",
            code="unexpected_response", status=response.status_code, response=response.text)
