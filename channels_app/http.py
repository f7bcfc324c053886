"""Shared plumbing for HTTP providers: one session, timeouts, no redirects, status mapping.

Every HTTP backend sends through :class:`HttpChannelBackend`, so the outbound URL check,
connection reuse, bounded concurrency and the mapping of HTTP status to transient or
permanent errors live in one place.
"""
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests
from django.conf import settings

from channels_app.base import ChannelBackend
from channels_app.concurrency import ConcurrentSendMixin
from channels_app.errors import PermanentChannelError, TransientChannelError
from channels_app.netguard import BlockedURLError, Resolver, UnresolvableHostError, parse_outbound_url
from channels_app.outbound import pinned_session

TRANSIENT_STATUSES = frozenset({408, 425, 429})
INVALID_URL_ERRORS = (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                      requests.exceptions.InvalidSchema)


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a ``Retry-After`` header (delta seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000" zones parse as naive; HTTP dates are always UTC
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def redact(error: Exception | str, url: str) -> str:
    """The error text without the URL's query string, where providers put access tokens."""
    text = str(error)
    query = url.partition("?")[2].partition("#")[0]  # not urlsplit: it raises on hostile URLs
    return text.replace(query, "***") if query else text


def blocked_url_error(exc: BlockedURLError, url: str):
    """The channel error for a URL the outbound policy refused."""
    if isinstance(exc, UnresolvableHostError):
        return TransientChannelError(redact(exc, url), code="dns_failure")
    return PermanentChannelError(redact(exc, url), code="blocked_url")


class HttpChannelBackend(ConcurrentSendMixin, ChannelBackend):
    user_agent = "notifyhub"

    def __init__(self, *, resolver: Resolver | None = None, **kwargs):
        super().__init__(**kwargs)
        #: How host names are resolved (the system resolver by default); see netguard.
        self.resolver = resolver
        self.session: requests.Session | None = None

    def open(self) -> None:
        if self.session is None:
            self.session = pinned_session(resolver=self.resolver, user_agent=self.user_agent)

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    def request(self, method: str, url: str, **kwargs) -> requests.Response:
        """Send one request; raise a channel error for network failures and error statuses."""
        try:  # the syntax here; the addresses are checked where the connection is opened
            parse_outbound_url(url)
        except BlockedURLError as exc:
            raise blocked_url_error(exc, url) from exc
        self.open()
        kwargs.setdefault("timeout", self.options.get("timeout") or settings.NOTIFYHUB_HTTP_TIMEOUT_SECONDS)
        try:
            response = self.session.request(method, url, allow_redirects=False, **kwargs)
        except BlockedURLError as exc:
            raise blocked_url_error(exc, url) from exc
        except requests.Timeout as exc:
            raise TransientChannelError(f"Timed out: {redact(exc, url)}", code="timeout") from exc
        except requests.ConnectionError as exc:
            raise TransientChannelError(f"Connection failed: {redact(exc, url)}", code="connection_error") from exc
        except INVALID_URL_ERRORS as exc:
            raise PermanentChannelError(f"Invalid URL: {redact(exc, url)}", code="invalid_url") from exc
        except requests.RequestException as exc:  # broken chunked body, bad content encoding...
            raise TransientChannelError(f"Request failed: {redact(exc, url)}", code="request_error") from exc
        self.raise_for_status(response)
        return response

    def post(self, url: str, **kwargs) -> requests.Response:
        return self.request("POST", url, **kwargs)

    def raise_for_status(self, response: requests.Response) -> None:
        """Map an HTTP status to the outcome; providers override to read their error bodies."""
        status = response.status_code
        if 200 <= status < 300:
            return
        text = response.text
        if status in TRANSIENT_STATUSES or status >= 500:
            raise TransientChannelError(
                f"HTTP {status}", status=status, response=text,
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        if 300 <= status < 400:
            raise PermanentChannelError(
                f"HTTP {status} redirect to {response.headers.get('Location', '?')} not followed",
                status=status, response=text,
            )
        raise PermanentChannelError(f"HTTP {status}", status=status, response=text)
