"""The Redis connection behind the hub's shared counters (rate limits, breakers, caps, dedup).

Those counters must be exact across every worker process and host, so they live in Redis and
change only inside Lua scripts: a script runs atomically, and it reads the time with
``redis.call('TIME')`` from the Redis server, so the clocks of the workers never matter.

With ``REDIS_URL`` empty (the embedded default) :func:`redis_client` returns ``None`` and each
primitive falls back to a process-local implementation with the same semantics, kept in a
:class:`LocalStore`. Limits are then per process: run one worker process in that mode.
"""
import threading
import time
from typing import Any

import redis
from django.conf import settings

_clients: dict[str, redis.Redis] = {}
_clients_lock = threading.Lock()


def redis_client() -> redis.Redis | None:
    """The client for ``settings.REDIS_URL``, or ``None`` when no Redis is configured.

    Created on first use, never at import: a module-level client would be built before Django
    settings are final (tests override them). One client per URL and process; its connection
    pool is thread-safe and redis-py replaces the pool's connections itself in a forked child.
    """
    url = settings.REDIS_URL
    if not url:
        return None
    client = _clients.get(url)
    if client is None:
        with _clients_lock:
            client = _clients.get(url)
            if client is None:
                client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5,
                                              health_check_interval=30)
                _clients[url] = client
    return client


class RedisScript:
    """A Lua script run by EVALSHA on the current client (loaded again after a SCRIPT FLUSH).

    Module-level instances are safe: nothing touches Redis until the first call.
    """

    def __init__(self, source: str):
        self.source = source
        self._scripts: dict[int, Any] = {}

    def __call__(self, client: redis.Redis, keys: list[str], args: list) -> Any:
        script = self._scripts.get(id(client))
        if script is None:
            script = self._scripts[id(client)] = client.register_script(self.source)
        return script(keys=keys, args=args)


class LocalStore:
    """Process-local keys with expiry, the stand-in for Redis when ``REDIS_URL`` is empty.

    Callers hold :attr:`lock` around a whole read-modify-write, which makes each operation
    atomic between the threads of one process (not between processes). Expired keys are
    dropped when read and swept now and then, so idle keys leave nothing behind.
    """

    SWEEP_SECONDS = 60.0

    def __init__(self):
        self.lock = threading.RLock()
        self._values: dict[str, tuple[Any, float | None]] = {}
        self._next_sweep = time.monotonic() + self.SWEEP_SECONDS

    def get(self, key: str, default: Any = None) -> Any:
        item = self._values.get(key)
        if item is None:
            return default
        value, expires = item
        if expires is not None and expires <= time.monotonic():
            del self._values[key]
            return default
        return value

    def put(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` for ``ttl`` seconds (``None``: until deleted)."""
        now = time.monotonic()
        self._values[key] = (value, None if ttl is None else now + ttl)
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_SECONDS
            for stale in [k for k, (_, exp) in self._values.items() if exp is not None and exp <= now]:
                del self._values[stale]

    def delete(self, key: str) -> None:
        self._values.pop(key, None)

    def __len__(self) -> int:
        """How many keys are alive (tests check that idle keys leave nothing behind)."""
        now = time.monotonic()
        return sum(1 for _, expires in self._values.values() if expires is None or expires > now)
