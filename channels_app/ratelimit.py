"""A provider account's send rate ("20/m"), enforced across every worker process and host.

Algorithm — a strict sliding window by reservation. Each account key keeps the times of the
last ``count`` reserved send slots still inside the window, oldest first (a Redis list). A new
slot is

    max(now, the latest slot + period / count, the count-th most recent slot + period + margin)

so any two slots ``count`` apart are more than ``period`` apart, which is exactly "never more
than ``count`` sends in any window of length ``period``" — not a fixed window, which lets
``2 × count`` through around its boundary. Spacing consecutive slots by ``period / count``
drains a burst evenly at the configured rate instead of ``count`` at once: a send that leaves a
little late then cannot pile up with a whole next burst at the provider, and providers that
throttle bursts (chat robots) see the steady rate they document. Taking the latest slot into
the max also hands slots out in arrival order (FIFO), so no caller is starved. The reservation
is written before the caller learns of it, so none is lost (a caller that drops it only wastes
a slot, never exceeds the rate).
The margin (a fraction of the period: ``settings.NOTIFYHUB_RATE_LIMIT_MARGIN``, 5% by default)
absorbs the jitter between a worker waking up and the provider seeing the request.

The script reads the clock of the Redis server (``TIME``), so workers' clocks don't matter;
it returns a delay in microseconds, which the caller turns into a sleep or a due time. The key
expires once its last slot has left the window, so idle accounts leave nothing behind.

Without ``REDIS_URL`` the same algorithm runs in process memory (see ``redis_conn``): the rate
then holds per process only.
"""
import bisect
import re
import time
from dataclasses import dataclass

from django.conf import settings

from channels_app.redis_conn import LocalStore, RedisScript, redis_client

DEFAULT_MARGIN = 0.05
_UNITS = {"s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
          "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
          "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
          "d": 86400, "day": 86400, "days": 86400}
_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$", re.IGNORECASE)
_CANONICAL_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


@dataclass(frozen=True)
class Rate:
    """At most ``count`` sends in any ``period_seconds`` long window."""

    count: int
    period_seconds: int

    def __str__(self) -> str:
        for unit, seconds in _CANONICAL_UNITS:
            if self.period_seconds % seconds == 0:
                multiple = self.period_seconds // seconds
                return f"{self.count}/{multiple if multiple != 1 else ''}{unit}"
        raise AssertionError("unreachable: every period is a whole number of seconds")


def rate_parse(text: str) -> Rate:
    """Parse "10/s", "20/m", "100/h", "1000/d" or "5/10s"; raise ``ValueError`` saying why not."""
    match = _RATE_RE.match(text or "")
    unit = match and _UNITS.get(match.group(3).lower())
    if not match or not unit:
        raise ValueError(f"invalid rate {text!r}: write <count>/<period>, e.g. '10/s', '20/m', '100/h' or "
                         f"'5/10s' (units: s, m, h, d)")
    count, multiple = int(match.group(1)), int(match.group(2) or 1)
    if count < 1 or multiple < 1:
        raise ValueError(f"invalid rate {text!r}: the count and the period must be at least 1")
    return Rate(count=count, period_seconds=multiple * unit)


_RESERVE = RedisScript("""
local count = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local margin = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- slots that have left the window constrain nothing: drop them, so the list holds at most the
-- sends of one period (a "600000/m" account sending 300/s keeps ~18000, not 600000)
while true do
  local oldest = redis.call('LINDEX', KEYS[1], 0)
  if not oldest or tonumber(oldest) + period + margin > now then break end
  redis.call('LPOP', KEYS[1])
end
local slot = now
local latest = redis.call('LINDEX', KEYS[1], -1)
if latest then slot = math.max(slot, tonumber(latest) + period / count) end
local nth = redis.call('LINDEX', KEYS[1], -count)
if nth then slot = math.max(slot, tonumber(nth) + period + margin) end
local wait = slot - now
if max_wait >= 0 and wait > max_wait then return wait end
redis.call('RPUSH', KEYS[1], string.format('%.0f', slot))
redis.call('LTRIM', KEYS[1], -count, -1)
redis.call('PEXPIRE', KEYS[1], math.ceil((wait + period + margin) / 1000) + 1000)
return wait
""")

_local = LocalStore()


def slot_reserve(key: str, rate: Rate, *, margin: float | None = None, max_wait: float | None = None) -> float:
    """Reserve the next free send slot of ``key`` under ``rate``; seconds until it (0: send now).

    ``margin`` (seconds) overrides the default of ``NOTIFYHUB_RATE_LIMIT_MARGIN`` × period. With
    ``max_wait``, a slot further ahead than that is *not* reserved and its delay is returned
    (so a result above ``max_wait`` means "nothing reserved, come back then"): a caller that
    puts the delivery back instead of waiting does not burn a slot it will not use.
    """
    period = float(rate.period_seconds)
    if margin is None:
        margin = period * float(getattr(settings, "NOTIFYHUB_RATE_LIMIT_MARGIN", DEFAULT_MARGIN))
    client = redis_client()
    if client is None:
        return _reserve_local(key, rate.count, period, margin, max_wait)
    micros = _RESERVE(client, [f"notifyhub:rate:{key}"], [
        rate.count, int(period * 1e6), int(margin * 1e6), -1 if max_wait is None else int(max_wait * 1e6)])
    return max(int(micros), 0) / 1e6


def _reserve_local(key: str, count: int, period: float, margin: float, max_wait: float | None) -> float:
    """The same reservation on a per-process list of slot times (monotonic clock)."""
    store_key = f"rate:{key}"
    with _local.lock:
        slots: list[float] = _local.get(store_key, [])
        now = time.monotonic()
        slots = slots[bisect.bisect_right(slots, now - period - margin):]  # they have left the window
        slot = now
        if slots:
            slot = max(slot, slots[-1] + period / count)
        if len(slots) >= count:
            slot = max(slot, slots[-count] + period + margin)
        wait = slot - now
        if max_wait is not None and wait > max_wait:
            return wait
        slots = (slots + [slot])[-count:]
        _local.put(store_key, slots, ttl=wait + period + margin + 1)
        return wait
