"""A circuit breaker per provider account, shared by every worker process and host.

States (a Redis hash per account; no key at all means closed with no failures):

- ``closed``: sends go through; consecutive transient failures are counted, and the breaker
  opens when they reach the threshold. An account-level error (bad credentials, quota gone)
  opens it at once. A success deletes the key.
- ``open``: nothing is sent until ``open_seconds`` have passed since it opened.
- ``half_open``: the first caller after that becomes the *probe* — the only one allowed, across
  all processes, because the switch happens inside one Lua script. Its success closes the
  breaker, its failure opens it for another ``open_seconds``. If the probe never reports
  (its worker died), another probe is let through after ``probe_timeout`` seconds.

Late results of sends that started before the breaker opened don't extend the open period, but
any success closes it — it proves the account works. Times come from the Redis server (``TIME``),
so workers' clocks don't matter. Without ``REDIS_URL`` the same state machine runs in process
memory (see ``redis_conn``): the breaker then holds per process only.
"""
import time
from datetime import UTC, datetime
from typing import NamedTuple

from channels_app.redis_conn import LocalStore, RedisScript, redis_client

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
PROBE_TIMEOUT = 60.0
# Failures counted while closed are forgotten after this long without a new one: "consecutive"
# failures a day apart say nothing about the account now, and an idle account leaves no key.
FAILURES_TTL = 86400


class BreakerDecision(NamedTuple):
    allowed: bool
    state: str  # the state after this decision: closed, open or half_open
    probe: bool  # True for the single caller whose send tests a half-open account


class BreakerChange(NamedTuple):
    state: str  # the state after the failure
    failures: int  # consecutive failures counted so far
    opened: bool  # True when this failure opened (or reopened) the breaker


def _key(account_id) -> str:
    return f"notifyhub:breaker:{account_id}"


_ALLOW = RedisScript("""
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
if state == 'closed' then return {1, state, 0} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if state == 'half_open' then
  if now < tonumber(redis.call('HGET', KEYS[1], 'probe_until') or '0') then return {0, state, 0} end
elseif now < tonumber(redis.call('HGET', KEYS[1], 'opened_at') or '0') + tonumber(ARGV[1]) then
  return {0, state, 0}
end
redis.call('HSET', KEYS[1], 'state', 'half_open', 'probe_until', string.format('%.0f', now + tonumber(ARGV[2])))
return {1, 'half_open', 1}
""")

_FAILURE = RedisScript("""
local state = redis.call('HGET', KEYS[1], 'state') or 'closed'
local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
if state == 'open' then return {state, failures, 0} end
if state == 'closed' and ARGV[2] == '0' and failures < tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'state', 'closed')
  redis.call('EXPIRE', KEYS[1], ARGV[4])
  return {state, failures, 0}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('HSET', KEYS[1], 'state', 'open', 'opened_at', string.format('%.0f', now),
           'reopen_at', string.format('%.0f', now + tonumber(ARGV[3])))
redis.call('HDEL', KEYS[1], 'probe_until')
redis.call('PERSIST', KEYS[1])
return {'open', failures, 1}
""")

_SUCCESS = RedisScript("""
local state = redis.call('HGET', KEYS[1], 'state')
redis.call('DEL', KEYS[1])
if state and state ~= 'closed' then return 1 end
return 0
""")

_local = LocalStore()


def breaker_allow(account_id, *, open_seconds: float, failure_threshold: int | None = None,
                  probe_timeout: float = PROBE_TIMEOUT) -> BreakerDecision:
    """May a send go out on this account now?

    ``open_seconds`` is read here (not stored when the breaker opened) so that an operator who
    shortens it sees the change at once. ``failure_threshold`` is accepted so callers can pass
    the account's whole breaker policy; only :func:`breaker_failure` needs it.
    """
    client = redis_client()
    if client is None:
        return _allow_local(_key(account_id), open_seconds, probe_timeout)
    allowed, state, probe = _ALLOW(client, [_key(account_id)], [int(open_seconds * 1e6), int(probe_timeout * 1e6)])
    return BreakerDecision(bool(allowed), _text(state), bool(probe))


def breaker_failure(account_id, *, failure_threshold: int, open_seconds: float,
                    account_level: bool = False) -> BreakerChange:
    """Record a failed send: a transient one counts toward ``failure_threshold`` consecutive
    failures, an account-level one (``AccountError``) opens the breaker at once, and any failure
    while half-open (the probe's) opens it again for ``open_seconds``."""
    if failure_threshold < 1:
        raise ValueError("failure_threshold must be at least 1")
    client = redis_client()
    if client is None:
        return _failure_local(_key(account_id), failure_threshold, open_seconds, account_level)
    state, failures, opened = _FAILURE(client, [_key(account_id)], [
        failure_threshold, int(account_level), int(open_seconds * 1e6), FAILURES_TTL])
    return BreakerChange(_text(state), int(failures), bool(opened))


def breaker_success(account_id) -> bool:
    """Record a successful send: close the breaker and forget the failures.

    Returns True when this success closed an open or half-open breaker (worth an event).
    """
    client = redis_client()
    if client is None:
        with _local.lock:
            entry = _local.get(_key(account_id))
            _local.delete(_key(account_id))
            return bool(entry) and entry["state"] != CLOSED
    return bool(_SUCCESS(client, [_key(account_id)], []))


def breaker_reset(account_id) -> None:
    """Close the breaker and forget its failures (the admin's "reset" action)."""
    client = redis_client()
    if client is None:
        with _local.lock:
            _local.delete(_key(account_id))
    else:
        client.delete(_key(account_id))


def breaker_state(account_id) -> dict:
    """For the admin: ``state``, ``failures``, ``opened_at``, ``reopen_at`` and ``probe_until``
    (aware UTC datetimes, or None)."""
    client = redis_client()
    if client is None:
        with _local.lock:
            entry = dict(_local.get(_key(account_id)) or {})
    else:
        entry = {_text(k): _text(v) for k, v in client.hgetall(_key(account_id)).items()}
        for field in ("opened_at", "reopen_at", "probe_until"):
            if field in entry:
                entry[field] = int(entry[field]) / 1e6

    def moment(field):
        return datetime.fromtimestamp(entry[field], UTC) if entry.get(field) is not None else None

    return {"state": entry.get("state", CLOSED), "failures": int(entry.get("failures", 0)),
            "opened_at": moment("opened_at"), "reopen_at": moment("reopen_at"),
            "probe_until": moment("probe_until")}


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --- the same state machine in process memory (no REDIS_URL) ---------------------------------
def _allow_local(key: str, open_seconds: float, probe_timeout: float) -> BreakerDecision:
    with _local.lock:
        entry = _local.get(key)
        if not entry or entry["state"] == CLOSED:
            return BreakerDecision(True, CLOSED, False)
        now = time.time()
        if entry["state"] == HALF_OPEN and now < entry["probe_until"]:
            return BreakerDecision(False, HALF_OPEN, False)
        if entry["state"] == OPEN and now < entry["opened_at"] + open_seconds:
            return BreakerDecision(False, OPEN, False)
        entry.update(state=HALF_OPEN, probe_until=now + probe_timeout)
        return BreakerDecision(True, HALF_OPEN, True)


def _failure_local(key: str, failure_threshold: int, open_seconds: float, account_level: bool) -> BreakerChange:
    with _local.lock:
        entry = _local.get(key) or {"state": CLOSED, "failures": 0}
        entry["failures"] += 1
        if entry["state"] == OPEN:
            return BreakerChange(OPEN, entry["failures"], False)
        if entry["state"] == CLOSED and not account_level and entry["failures"] < failure_threshold:
            _local.put(key, entry, ttl=FAILURES_TTL)
            return BreakerChange(CLOSED, entry["failures"], False)
        now = time.time()
        entry.update(state=OPEN, opened_at=now, reopen_at=now + open_seconds, probe_until=None)
        _local.put(key, entry)
        return BreakerChange(OPEN, entry["failures"], True)
