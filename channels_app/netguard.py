"""The outbound-URL policy: notifyhub must not become a tool for reaching private networks.

Callers of the API choose where some requests go (a recipient's webhook URL, a channel's base
URL, an Apprise URL), so every outbound URL passes three checks:

1. **Syntax, unambiguously.** HTTP clients and URL parsers disagree on odd input: ``urlsplit``
   reads the host of ``http://127.0.0.1:8899\\@1.2.3.4/`` as ``1.2.3.4`` while ``requests``
   connects to 127.0.0.1. So anything a parser might read two ways is refused: backslashes,
   whitespace and control characters, userinfo (``user@``), a trailing dot, IPv6 zone ids and
   non-canonical IPv4 forms (``0x7f.1``, ``2130706433``, ``017700000001``, ``127.1``), which
   ``getaddrinfo`` would happily turn into 127.0.0.1. What remains is parsed by urllib3's
   ``parse_url`` (what ``requests`` uses) and must read the same with ``urlsplit``.
2. **Every resolved address.** The host is resolved once and *every* answer must be public:
   loopback, private, CGNAT, link-local, unique-local, site-local, multicast, reserved and
   unspecified addresses are refused, and so are IPv6 forms wrapping such an IPv4 address
   (mapped ``::ffff:0:0/96``, compatible ``::/96``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``)
   and Teredo.
3. **Connect to the checked address.** :mod:`channels_app.outbound` resolves and checks at
   connect time and connects to the address it checked, so a second DNS answer (rebinding)
   cannot differ. Saving a URL checks only 1 and literal addresses (DNS may change later).

``NOTIFYHUB_OUTBOUND_ALLOW_PRIVATE`` (development) or ``NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS``
(named hosts, e.g. an internal relay) lift check 2 only; the syntax check always applies.
The resolver is a parameter (``resolver=``) so a test can play a rebinding DNS server.
"""
import ipaddress
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

#: ``resolver(host, port) -> [address, ...]``
Resolver = Callable[[str, int], list[str]]

MAX_URL_LENGTH = 2048
_SCHEME_RE = re.compile(r"^(https?)://", re.IGNORECASE)
_LABEL_RE = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_CANONICAL_OCTET_RE = re.compile(r"^(0|[1-9][0-9]{0,2})$")
_NUMERIC_LOOKING_RE = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
#: Special-purpose ranges some Python versions report as global (IETF protocol assignments).
_SPECIAL_V4 = (ipaddress.ip_network("192.0.0.0/24"),)


class BlockedURLError(ValueError):
    pass


class UnresolvableHostError(BlockedURLError):
    """The host did not resolve: possibly a passing DNS failure, so a send may retry."""


@dataclass(frozen=True, slots=True)
class OutboundURL:
    scheme: str
    host: str  # lower case; an IPv6 literal without brackets
    port: int

    @property
    def is_ip(self) -> bool:
        return _ip_or_none(self.host) is not None


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``getaddrinfo`` gives for ``host`` (A and AAAA)."""
    return [info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


# --- 1. syntax ---------------------------------------------------------------------------------
def parse_outbound_url(url: str) -> OutboundURL:
    """Split ``url`` into scheme, host and port, refusing anything parsers could read two ways."""
    if not isinstance(url, str) or not url:
        raise BlockedURLError("The URL is empty.")
    if len(url) > MAX_URL_LENGTH:
        raise BlockedURLError(f"The URL is longer than {MAX_URL_LENGTH} characters.")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise BlockedURLError("The URL contains whitespace or control characters.")
    if "\\" in url:
        raise BlockedURLError("The URL contains a backslash, which HTTP clients read differently.")
    match = _SCHEME_RE.match(url)
    if not match:
        raise BlockedURLError("Only http and https URLs are allowed.")
    scheme = match.group(1).lower()
    authority = re.split(r"[/?#]", url[match.end():], maxsplit=1)[0]
    if "@" in authority:
        raise BlockedURLError("The URL carries a user name or password (user@host); put credentials elsewhere.")
    if not authority.isascii():
        raise BlockedURLError("The host must be ASCII (use its punycode form, xn--...).")
    host, port = _split_authority(authority, scheme)
    _check_agreement(url, host, port, scheme)
    return OutboundURL(scheme=scheme, host=host, port=port)


def _split_authority(authority: str, scheme: str) -> tuple[str, int]:
    default_port = 443 if scheme == "https" else 80
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            raise BlockedURLError("The IPv6 address is not closed with ']'.")
        literal, rest = authority[1:end], authority[end + 1:]
        if "%" in literal:
            raise BlockedURLError("IPv6 zone ids (%...) are not allowed.")
        try:
            host = str(ipaddress.IPv6Address(literal))
        except ValueError:
            raise BlockedURLError(f"{literal!r} is not an IPv6 address.") from None
    else:
        host, sep, rest = authority.partition(":")
        rest = sep + rest
        host = host.lower()
        _check_host_name(host)
    if not rest:
        return host, default_port
    if not rest.startswith(":") or not rest[1:].isdigit() or not rest[1:].isascii():
        raise BlockedURLError("The URL is malformed: the port must be a number after the host.")
    port = int(rest[1:])
    if not 0 < port < 65536:
        raise BlockedURLError("The URL is malformed: the port is out of range.")
    return host, port


def _check_host_name(host: str) -> None:
    if not host:
        raise BlockedURLError("The URL has no host.")
    if host.endswith("."):
        raise BlockedURLError("The host ends with a dot; write it without.")
    if len(host) > 253:
        raise BlockedURLError("The host name is too long.")
    labels = host.split(".")
    if any(not _LABEL_RE.match(label) for label in labels):
        raise BlockedURLError(f"{host!r} is not a valid host name.")
    looks_numeric = labels[-1].isdigit() or any(
        _NUMERIC_LOOKING_RE.match(label) and not label.isdigit() for label in labels)
    canonical = len(labels) == 4 and all(_CANONICAL_OCTET_RE.match(o) and int(o) < 256 for o in labels)
    if looks_numeric and not canonical:  # only the dotted quad in decimal reads the same everywhere
        raise BlockedURLError(f"{host!r} is not a canonical IPv4 address (write a.b.c.d in decimal).")


def _check_agreement(url: str, host: str, port: int, scheme: str) -> None:
    """urllib3 (requests, httpx-compatible) and urlsplit must read the same host and port."""
    try:
        parsed = parse_url(url)
        split = urlsplit(url)
        split_port = split.port
    except (LocationParseError, ValueError):
        raise BlockedURLError("The URL is malformed.") from None
    readings = {
        ((parsed.host or "").strip("[]").lower(), parsed.port or port),
        ((split.hostname or "").lower(), split_port or port),
    }
    readings = {(str(ipaddress.ip_address(h)) if _ip_or_none(h) else h, p) for h, p in readings}
    if readings != {(host, port)} or parsed.auth:
        raise BlockedURLError("The URL is ambiguous: parsers disagree on its host.")


# --- 2. addresses ------------------------------------------------------------------------------
def _ip_or_none(text: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def address_refusal(address: str) -> str | None:
    """Why ``address`` must not be contacted, or ``None`` if it is a public unicast address."""
    ip = _ip_or_none(address)
    if ip is None:
        return "not an IP address"
    if ip.version == 6:
        if ip.scope_id:
            return "an IPv6 address with a zone id"
        if ip.teredo or ip in _NAT64_LOCAL:
            return "a tunnelled address (Teredo, local NAT64)"
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            reason = address_refusal(str(embedded))
            return f"an IPv6 form of {embedded}, {reason}" if reason else None
        if ip.is_site_local:
            return "a site-local address"
    elif ip in _CGNAT:
        return "a carrier-grade NAT address"
    elif any(ip in network for network in _SPECIAL_V4):
        return "a special-purpose address"
    checks = (("unspecified", ip.is_unspecified), ("loopback", ip.is_loopback), ("multicast", ip.is_multicast),
              ("link-local", ip.is_link_local), ("private", ip.is_private), ("reserved", ip.is_reserved),
              ("non-global", not ip.is_global))
    for name, hit in checks:
        if hit:
            return f"a {name} address"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64_WELL_KNOWN or (ip in _IPV4_COMPATIBLE and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def host_is_trusted(host: str) -> bool:
    """The operator lifted the address check for this host (or for all, in development)."""
    allowed = {h.strip().lower().strip("[]") for h in settings.NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS}
    return bool(settings.NOTIFYHUB_OUTBOUND_ALLOW_PRIVATE) or host.lower() in allowed


def resolve_checked(host: str, port: int, *, resolver: Resolver | None = None) -> list[str]:
    """Resolve ``host`` once; return its addresses if every one may be contacted."""
    host = host.strip("[]").lower()
    if _ip_or_none(host) is not None:
        addresses = [str(ipaddress.ip_address(host))]
    elif host == "localhost" or host.endswith(".localhost"):
        addresses = ["127.0.0.1"]
    else:
        try:
            addresses = list(dict.fromkeys((resolver or system_resolver)(host, port)))
        except (socket.gaierror, UnicodeError) as exc:
            raise UnresolvableHostError(f"The host {host!r} does not resolve.") from exc
        if not addresses:
            raise UnresolvableHostError(f"The host {host!r} does not resolve.")
    if host_is_trusted(host):
        return addresses
    for address in addresses:
        reason = address_refusal(address)
        if reason:
            raise BlockedURLError(
                f"{host} resolves to {address}, a private or reserved address ({reason}); notifyhub only "
                "contacts public addresses "
                "(allow a host with NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS)."
            )
    return addresses


def check_outbound_url(url: str, *, resolve: bool = True, resolver: Resolver | None = None) -> str:
    """Return ``url`` if it may be requested; raise :class:`BlockedURLError` saying why not.

    ``resolve=False`` (on save) checks the syntax and literal addresses only.
    """
    target = parse_outbound_url(url)
    if host_is_trusted(target.host):  # resolved (and pinned) only when connecting
        return url
    if resolve or target.is_ip or target.host == "localhost" or target.host.endswith(".localhost"):
        resolve_checked(target.host, target.port, resolver=resolver)
    return url
