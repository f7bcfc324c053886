"""Per-recipient frequency caps and duplicate suppression, exact across every worker.

Frequency cap ("at most 3 marketing SMS a day"): a Redis sorted set per recipient × category ×
channel holds one member per take — the delivery id as member, the take time as score. One Lua
script drops the takes older than the period, then either adds this one (fewer than ``limit``
left in the window) or refuses and names the moment a unit frees up. Check and add happen in one
script, so two workers can never both take the last unit; and since the member is the delivery
id, a delivery that is retried or re-run takes its unit once. The ``*_peek`` functions answer
the same question without writing, for dry runs.

Dedup ("don't send the same content to the same person twice within 10 minutes"): the content
fingerprint is stored with ``SET NX`` and an expiry, its value the delivery id of the first
sender; a later delivery within the window learns that id, the same delivery re-running does not.

Times come from the Redis server (``TIME``), so workers' clocks don't matter. Without
``REDIS_URL`` the same logic runs in process memory (see ``channels_app.redis_conn``), and the
caps and dedup then hold per process only.
"""
import hashlib
import json
import time
from datetime import UTC, datetime
from typing import NamedTuple

from channels_app.redis_conn import LocalStore, RedisScript, redis_client


class CapDecision(NamedTuple):
    allowed: bool
    count: int  # takes in the window, this one included when allowed
    retry_at: datetime | None  # when refused: when a unit frees up (None when allowed, or limit < 1)


_TAKE = RedisScript("""
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local take = ARGV[4] == '1'  -- '0': only look (a dry run), write nothing
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local horizon = string.format('%.0f', now - period)
if take then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', horizon) end
local count = redis.call('ZCOUNT', KEYS[1], '(' .. horizon, '+inf')
local own = redis.call('ZSCORE', KEYS[1], ARGV[3])
if own and tonumber(own) > now - period then return {1, count, -1} end
if count < limit then
  if take then
    redis.call('ZADD', KEYS[1], string.format('%.0f', now), ARGV[3])
    redis.call('PEXPIRE', KEYS[1], math.ceil(period / 1000) + 1000)
  end
  return {1, count + 1, -1}
end
-- a unit frees up when the take that brings the count below the limit leaves the window
local freeing = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. horizon, '+inf', 'WITHSCORES', 'LIMIT', count - limit, 1)
return {0, count, string.format('%.0f', tonumber(freeing[2]) + period)}
""")

_RELEASE = RedisScript("""
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end
return removed
""")

_DEDUP = RedisScript("""
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
local earlier = redis.call('GET', KEYS[1])
if earlier == ARGV[1] then return false end
return earlier
""")

_FORGET = RedisScript("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")

_local = LocalStore()


def _cap_key(recipient_id, category: str, channel: str) -> str:
    return f"notifyhub:fcap:{recipient_id}:{channel}:{category}"


def frequency_cap_take(*, recipient_id, category: str, channel: str, limit: int, period_seconds: float,
                       token: str) -> CapDecision:
    """Take one unit of the recipient's cap: allowed only while fewer than ``limit`` were taken
    in the last ``period_seconds``. ``token`` (the delivery id) makes a repeated take by the
    same delivery count once. A refusal carries ``retry_at`` for "defer instead of skip"."""
    return _cap(recipient_id, category, channel, limit, period_seconds, str(token), take=True)


def frequency_cap_peek(*, recipient_id, category: str, channel: str, limit: int, period_seconds: float,
                       token: str) -> CapDecision:
    """What :func:`frequency_cap_take` would answer now, taking nothing (for dry runs)."""
    return _cap(recipient_id, category, channel, limit, period_seconds, str(token), take=False)


def _cap(recipient_id, category: str, channel: str, limit: int, period_seconds: float, token: str, *,
         take: bool) -> CapDecision:
    if period_seconds <= 0:
        raise ValueError("period_seconds must be positive")
    if limit < 1:
        return CapDecision(False, 0, None)
    key = _cap_key(recipient_id, category, channel)
    client = redis_client()
    if client is None:
        return _take_local(key, limit, float(period_seconds), token, take)
    allowed, count, retry_at = _TAKE(client, [key], [limit, int(period_seconds * 1e6), token, int(take)])
    retry_at = int(retry_at)
    return CapDecision(bool(allowed), int(count),
                       datetime.fromtimestamp(retry_at / 1e6, UTC) if retry_at >= 0 else None)


def frequency_cap_release(*, recipient_id, category: str, channel: str, token: str) -> bool:
    """Give back the unit ``token`` took (its delivery was not sent after all); True if it had one."""
    key, token = _cap_key(recipient_id, category, channel), str(token)
    client = redis_client()
    if client is None:
        with _local.lock:
            takes: dict = _local.get(key, {})
            return takes.pop(token, None) is not None
    return bool(_RELEASE(client, [key], [token]))


def duplicate_check(*, fingerprint: str, window_seconds: float, token: str) -> str | None:
    """Record ``fingerprint`` for ``window_seconds``; None if this delivery (``token``) is the
    first within the window or is that first one re-running, else the earlier delivery's token."""
    if window_seconds <= 0:
        raise ValueError("window_seconds must be positive")
    key, token = f"notifyhub:dedup:{fingerprint}", str(token)
    client = redis_client()
    if client is None:
        with _local.lock:
            earlier = _local.get(key)
            if earlier is None:
                _local.put(key, token, ttl=float(window_seconds))
                return None
            return None if earlier == token else earlier
    earlier = _DEDUP(client, [key], [token, max(int(window_seconds * 1000), 1)])
    return earlier.decode() if isinstance(earlier, bytes) else earlier


def duplicate_peek(*, fingerprint: str, token: str) -> str | None:
    """What :func:`duplicate_check` would answer now, recording nothing (for dry runs)."""
    key, token = f"notifyhub:dedup:{fingerprint}", str(token)
    client = redis_client()
    if client is None:
        with _local.lock:
            earlier = _local.get(key)
    else:
        earlier = client.get(key)
        earlier = earlier.decode() if isinstance(earlier, bytes) else earlier
    return None if earlier in (None, token) else earlier


def duplicate_forget(*, fingerprint: str, token: str) -> bool:
    """Drop the fingerprint if ``token`` recorded it (its delivery was not sent after all), so a
    later one may go; True if it was dropped."""
    key, token = f"notifyhub:dedup:{fingerprint}", str(token)
    client = redis_client()
    if client is None:
        with _local.lock:
            if _local.get(key) == token:
                _local.delete(key)
                return True
            return False
    return bool(_FORGET(client, [key], [token]))


def content_fingerprint(template_key: str, recipient_id, channel: str, content: dict) -> str:
    """A stable sha256 (hex) of what a recipient would see: canonical JSON (sorted keys, no
    whitespace), so the same content gives the same fingerprint in every process and release."""
    canonical = json.dumps([str(template_key), str(recipient_id), str(channel), content],
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _take_local(key: str, limit: int, period: float, token: str, take: bool) -> CapDecision:
    """The same rolling window on a per-process dict token -> take time."""
    with _local.lock:
        now = time.time()
        takes: dict[str, float] = {t: at for t, at in _local.get(key, {}).items() if at > now - period}
        if token in takes:
            decision = CapDecision(True, len(takes), None)
        elif len(takes) < limit:
            decision = CapDecision(True, len(takes) + 1, None)
            if take:
                takes[token] = now
        else:
            freeing = sorted(takes.values())[len(takes) - limit]
            decision = CapDecision(False, len(takes), datetime.fromtimestamp(freeing + period, UTC))
        if take and takes:
            _local.put(key, takes, ttl=period + 1)
        elif take:
            _local.delete(key)
        return decision
