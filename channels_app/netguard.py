"""Outgoing URL checks: notifyhub must not become a tool for reaching private networks.

A URL is checked when an operator saves it and again before each request (DNS can change
between the two). Loopback, private, link-local and reserved addresses are refused unless
``NOTIFYHUB_OUTBOUND_ALLOW_PRIVATE`` is on or the host is listed in
``NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS``.
"""
import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings


class BlockedURLError(ValueError):
    pass


class UnresolvableHostError(BlockedURLError):
    """The host did not resolve: possibly a passing DNS failure, so a send may retry."""


def _address_is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.version == 6 and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_outbound_url(url: str, *, resolve: bool = True) -> str:
    """Return ``url`` if it may be requested; raise :class:`BlockedURLError` saying why not."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise BlockedURLError("Only http and https URLs are allowed.")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:  # a port out of range or not a number
        raise BlockedURLError(f"The URL is malformed: {exc}.") from None
    if not host:
        raise BlockedURLError("The URL has no host.")
    allowed = {h.strip().lower() for h in settings.NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS}
    if settings.NOTIFYHUB_OUTBOUND_ALLOW_PRIVATE or host in allowed:
        return url
    try:
        addresses = _addresses(host, port, resolve=resolve)
    except socket.gaierror as exc:
        raise UnresolvableHostError(f"The host {host!r} does not resolve.") from exc
    except UnicodeError as exc:
        raise BlockedURLError(f"The host {host!r} is not a valid host name.") from exc
    for address in addresses:
        if not _address_is_public(address):
            raise BlockedURLError(
                f"{host} resolves to {address}, a private or reserved address; "
                "allow it with NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS."
            )
    return url


def _addresses(host: str, port: int | None, *, resolve: bool) -> list[str]:
    if host == "localhost" or host.endswith(".localhost"):
        return ["127.0.0.1"]
    if _is_ip(host):
        return [host]
    if not resolve:
        return []
    return [info[4][0] for info in socket.getaddrinfo(host, port or 443)]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
