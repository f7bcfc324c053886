"""Request throttles for the API: per client address, per API key and scope, per failed key.

Counters live in the shared Django cache (Redis when ``REDIS_URL`` is set), so a limit holds
across every web process, and each counter is one atomic ``INCR`` on a fixed window: no
read-modify-write race between processes, unlike a history list kept in the cache.

- ``address``: every ``/api/`` request of one client address, with or without a key;
- ``send``/``read``/``manage``: every request of one API key, by the scope its operation needs;
- ``auth_failure``: wrong or revoked keys from one address, checked *before* the key is looked
  up, so guessing keys is slow however fast the guesses come.

Rates come from ``NOTIFYHUB_THROTTLE_RATES`` (``"600/min"``; blank for no limit), read at each
request so tests and operators can change them without a restart. A throttled request answers
``429`` with ``Retry-After``.
"""
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.exceptions import AuthenticationFailed, Throttled
from rest_framework.throttling import BaseThrottle

from notifyhub.api.auth import ApiKeyAuthentication
from notifyhub.api.schema import ApiKeyScheme

_PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """``"600/min"`` -> (600, 60); ``"10/5s"`` -> (10, 5); blank -> None (no limit)."""
    if not rate:
        return None
    count, _, period = rate.partition("/")
    digits = "".join(ch for ch in period if ch.isdigit())
    unit = period[len(digits):][:1].lower()
    return int(count), int(digits or 1) * _PERIODS[unit]


def window_hit(*, key: str, rate: str | None, count: bool = True) -> float | None:
    """Count one hit on ``key``; seconds to wait when over the rate, else None."""
    parsed = parse_rate(rate)
    if parsed is None:
        return None
    limit, period = parsed
    now = time.time()
    window = int(now // period)
    cache_key = f"throttle:{key}:{window}"
    if count:
        cache.add(cache_key, 0, timeout=period + 1)
        try:
            hits = cache.incr(cache_key)
        except ValueError:  # expired between add and incr: start the window again
            cache.set(cache_key, 1, timeout=period + 1)
            hits = 1
    else:
        hits = cache.get(cache_key, 0)
    if hits > limit or (not count and hits >= limit):
        return max((window + 1) * period - now, 1.0)
    return None


def _rate(scope: str) -> str | None:
    return settings.NOTIFYHUB_THROTTLE_RATES.get(scope)


def client_address(request) -> str:
    """The client's address: ``REMOTE_ADDR``, or the address the trusted proxies saw.

    ``X-Forwarded-For`` is read only as far as ``NOTIFYHUB_TRUSTED_PROXIES`` hops reach, so a
    client cannot pick its own address by sending the header.
    """
    proxies = settings.NOTIFYHUB_TRUSTED_PROXIES
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    if proxies and forwarded:
        return forwarded[-min(proxies, len(forwarded))]
    return request.META.get("REMOTE_ADDR", "")


class _WindowThrottle(BaseThrottle):
    def __init__(self):
        self._wait: float | None = None

    def wait(self):
        return self._wait


class AddressThrottle(_WindowThrottle):
    """Every request of one client address."""

    def allow_request(self, request, view):
        self._wait = window_hit(key=f"address:{client_address(request)}", rate=_rate("address"))
        return self._wait is None


class ApiKeyScopeThrottle(_WindowThrottle):
    """Every request of one API key, counted per scope (``send``, ``read``, ``manage``)."""

    def allow_request(self, request, view):
        scope = getattr(view, "scopes", {}).get(request.method)
        if request.auth is None or scope is None:
            return True
        self._wait = window_hit(key=f"key:{request.auth.pk}:{scope}", rate=_rate(scope))
        return self._wait is None


class ThrottledApiKeyAuthentication(ApiKeyAuthentication):
    """API key authentication behind the address limit and the wrong-key limit.

    DRF authenticates before it runs throttles, so a request without a key or with a wrong
    one would answer 401 without ever being counted; both address limits therefore sit here,
    in front of the key lookup.
    """

    def authenticate(self, request):
        address = AddressThrottle()
        if not address.allow_request(request, None):
            raise Throttled(wait=address.wait())
        key = f"auth_failure:{client_address(request)}"
        wait = window_hit(key=key, rate=_rate("auth_failure"), count=False)
        if wait is not None:
            raise Throttled(wait=wait, detail="Too many requests with a wrong API key from this address.")
        try:
            return super().authenticate(request)
        except AuthenticationFailed:
            window_hit(key=key, rate=_rate("auth_failure"))
            raise


class ThrottledApiKeyScheme(ApiKeyScheme):
    """The same ``Api-Key`` security scheme in the OpenAPI document."""

    target_class = "notifyhub.api.throttling.ThrottledApiKeyAuthentication"

