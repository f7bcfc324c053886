"""HTTP clients that connect only to addresses the outbound-URL policy checked.

Checking a URL and then letting the client resolve it again leaves a gap: a DNS server that
answers a public address to the check and 127.0.0.1 to the connect (DNS rebinding) wins. Here
the check *is* the resolution: the connection classes of ``requests`` (urllib3) and of
``httpx`` (httpcore's network backend) ask :func:`channels_app.netguard.resolve_checked` for
the host's addresses at connect time and open the socket to the first checked address. The
URL keeps its host name, so the ``Host`` header, TLS SNI and certificate verification are
for the name, not the address. Every connection the backends open (redirects are never
followed; a reconnect of a pooled connection resolves and checks again) goes through here.

Libraries that make their own ``requests`` calls (Apprise: ``requests.post(...)`` in each plugin,
on a fresh session each time) cannot be given an adapter. For them, :func:`pinned_hosts` pins
host names to checked addresses for the duration of a block: urllib3's ``create_connection``
(what every ``requests`` connection opens its socket with) is wrapped once, at import, and
consults the pins only while a block is active, connecting to the pinned address (the URL keeps
the name, as above) and refusing any host that was not pinned. The pins live in a context
variable, not a thread-local, because Apprise runs each service in its worker threads with a
copy of the caller's context (``submit_with_context``); threads outside a block, and
connections not made through urllib3 (Apprise's SMTP for ``mailto://``), are unaffected.

``NOTIFYHUB_CA_BUNDLE`` (a PEM file) replaces the default trust store of both clients, for
companies whose egress goes through a TLS-inspecting proxy.
"""
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial

import httpcore
import httpx
import requests
import urllib3.util.connection
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from channels_app.netguard import Resolver, resolve_checked


def ca_bundle() -> str:
    """The PEM file of trusted CAs: ``NOTIFYHUB_CA_BUNDLE`` or the one requests ships (certifi)."""
    return getattr(settings, "NOTIFYHUB_CA_BUNDLE", "") or requests.utils.DEFAULT_CA_BUNDLE_PATH


def ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_bundle())


# --- requests / urllib3 ------------------------------------------------------------------------
class _PinnedConnectionMixin:
    resolver: Resolver | None = None

    def _new_conn(self):
        host = self._dns_host
        # Resolve and check once; connect to that address. The host name stays for SNI/Host.
        self._dns_host = resolve_checked(host.rstrip("."), self.port, resolver=type(self).resolver)[0]
        try:
            return super()._new_conn()
        finally:
            self._dns_host = host


class PinnedHTTPConnection(_PinnedConnectionMixin, HTTPConnection):
    pass


class PinnedHTTPSConnection(_PinnedConnectionMixin, HTTPSConnection):
    pass


class PinnedHTTPAdapter(HTTPAdapter):
    """A ``requests`` adapter whose connections go only to checked addresses."""

    def __init__(self, *, resolver: Resolver | None = None, **kwargs):
        attrs = {"resolver": staticmethod(resolver) if resolver else None}
        http_conn = type("PinnedHTTPConnection", (PinnedHTTPConnection,), attrs)
        https_conn = type("PinnedHTTPSConnection", (PinnedHTTPSConnection,), attrs)
        self._pool_classes = {
            "http": type("PinnedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
            "https": type("PinnedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
        }
        super().__init__(**kwargs)

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        # The setting wins over REQUESTS_CA_BUNDLE, which requests prefers to ``session.verify``.
        bundle = getattr(settings, "NOTIFYHUB_CA_BUNDLE", "")
        if bundle and verify is not False:
            verify = bundle
        return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = self._pool_classes


def harden_session(session: requests.Session, *, resolver: Resolver | None = None,
                   pool_maxsize: int | None = None) -> requests.Session:
    """Give a ``requests`` session (ours or a library's) the pinned adapter and the CA bundle."""
    adapter = PinnedHTTPAdapter(resolver=resolver, pool_maxsize=pool_maxsize or settings.NOTIFYHUB_HTTP_CONCURRENCY)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def pinned_session(*, resolver: Resolver | None = None, user_agent: str = "notifyhub") -> requests.Session:
    """A new ``requests`` session whose connections go only to checked addresses."""
    session = requests.Session()
    session.headers["User-Agent"] = user_agent
    return harden_session(session, resolver=resolver)


# --- httpx / httpcore --------------------------------------------------------------------------
class PinnedNetworkBackend(httpcore.SyncBackend):
    """httpcore opens TCP here, then starts TLS with the URL's host name as SNI."""

    def __init__(self, resolver: Resolver | None = None):
        self.resolver = resolver

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        address = resolve_checked(host, port, resolver=self.resolver)[0]
        return super().connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                   socket_options=socket_options)


class PinnedTransport(httpx.HTTPTransport):
    """An httpx transport whose connections go only to checked addresses."""

    def __init__(self, *, resolver: Resolver | None = None, http1: bool = True, http2: bool = False,
                 limits: httpx.Limits | None = None):
        limits = limits or httpx.Limits()
        super().__init__(verify=ssl_context(), http1=http1, http2=http2, limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context(), max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            http1=http1, http2=http2, network_backend=PinnedNetworkBackend(resolver),
        )


pinned_http2_transport = partial(PinnedTransport, http1=False, http2=True)


# --- libraries' own requests calls (Apprise) ---------------------------------------------------
class UnpinnedHostError(OSError):
    """A connection, inside :func:`pinned_hosts`, to a host notifyhub did not check."""


#: host name (lower case, IPv6 without brackets) -> the checked address to connect to
_pins: ContextVar[Mapping[str, str] | None] = ContextVar("notifyhub_pinned_hosts", default=None)
_create_connection = getattr(urllib3.util.connection.create_connection, "__wrapped__",
                             urllib3.util.connection.create_connection)


def _pinned_create_connection(address, *args, **kwargs):
    pins = _pins.get()
    if pins is not None:
        host, port = address
        name = host.strip("[]").lower()
        if name not in pins:
            raise UnpinnedHostError(f"{name} was not checked by notifyhub's outbound URL policy; not connecting.")
        address = (pins[name], port)
    return _create_connection(address, *args, **kwargs)


_pinned_create_connection.__wrapped__ = _create_connection
urllib3.util.connection.create_connection = _pinned_create_connection


@contextmanager
def pinned_hosts(pins: Mapping[str, str]) -> Iterator[None]:
    """Within this block, urllib3 connects ``host`` only to ``pins[host]`` and refuses any other host."""
    token = _pins.set({host.strip("[]").lower(): address for host, address in pins.items()})
    try:
        yield
    finally:
        _pins.reset(token)
