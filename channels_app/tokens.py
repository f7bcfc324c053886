"""Provider access tokens shared by every worker process through the cache (Redis).

WeChat and FCM hand out short-lived access tokens, and WeChat invalidates the previous token
whenever a new one is fetched, so every process must use the same one. :func:`access_token`
returns the cached token, or fetches one under a cache lock so that only one process calls
the token endpoint while the others wait for its result. A provider that reports the token
expired earlier than announced calls :func:`access_token_invalidate` and the next caller
fetches a fresh one.
"""
import fcntl
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.core.cache import cache

from channels_app.errors import TransientChannelError

LOCK_SECONDS = 30
WAIT_STEP = 0.05


def _key(name: str) -> str:
    return f"notifyhub:token:{name}"


def access_token(name: str, fetch: Callable[[], tuple[str, float]], *, margin: float = 300) -> str:
    """The cached token ``name``; ``fetch()`` returns ``(token, lifetime_seconds)``.

    The token is kept for ``lifetime - margin`` seconds (at least half its lifetime), so it is
    refreshed before it expires.
    """
    key = _key(name)
    token = cache.get(key)
    if token:
        return token
    with _host_lock(name):  # threads and (without Redis) processes of this host queue here
        return _fetch_once(key, name, fetch, margin)


_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


@contextmanager
def _host_lock(name: str):
    """A lock for this host: per name across threads, and across processes through a lock file
    when the cache is not Redis (the embedded file cache's ``add`` is not atomic)."""
    with _thread_locks_guard:
        lock = _thread_locks.setdefault(name, threading.Lock())
    with lock:
        if settings.REDIS_URL:
            yield
            return
        path = Path(settings.VAR_DIR) / "locks" / f"token-{name.replace('/', '_').replace(':', '_')}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _fetch_once(key: str, name: str, fetch, margin: float) -> str:
    token = cache.get(key)
    if token:
        return token
    lock = f"{key}:lock"
    deadline = time.monotonic() + LOCK_SECONDS
    while not cache.add(lock, 1, timeout=LOCK_SECONDS):
        time.sleep(WAIT_STEP)
        token = cache.get(key)
        if token:
            return token
        if time.monotonic() > deadline:
            raise TransientChannelError(f"Timed out waiting for access token {name}", code="token_lock")
    try:
        token = cache.get(key)  # another process may have stored it between get and add
        if token:
            return token
        token, lifetime = fetch()
        keep = max(lifetime - margin, lifetime / 2)
        if keep > 0:
            cache.set(key, token, timeout=keep)
        return token
    finally:
        cache.delete(lock)


def access_token_invalidate(name: str, token: str) -> None:
    """Forget ``token`` if it is still the cached one (a newer one is left alone)."""
    key = _key(name)
    if cache.get(key) == token:
        cache.delete(key)
