"""The provider rate limit: a strict sliding window shared by processes through Redis, and the
same semantics in process memory when no Redis is configured."""
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from django.conf import settings

from channels_app.ratelimit import Rate, rate_parse, slot_reserve
from channels_app.redis_conn import LocalStore, redis_client
from tests.conftest import ROOT


def max_in_window(times: list[float], period: float) -> int:
    """The largest number of events inside any closed window of length ``period``."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] > period:
            start += 1
        best = max(best, end - start + 1)
    return best


def run_children(code: str, argv_list: list[list[str]], timeout: float = 90) -> list:
    """Run ``code`` in one fresh Python process per argv, in parallel; each prints JSON last."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "notifyhub.settings",
           "REDIS_URL": settings.REDIS_URL}
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *argv], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for argv in argv_list]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


# --- parsing ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text, count, period, canonical", [
    ("10/s", 10, 1, "10/s"),
    ("20/m", 20, 60, "20/m"),
    ("100/h", 100, 3600, "100/h"),
    ("1000/d", 1000, 86400, "1000/d"),
    ("5/10s", 5, 10, "5/10s"),
    (" 3 / 2 minutes ", 3, 120, "3/2m"),
    ("1/60s", 1, 60, "1/m"),
    ("7/SEC", 7, 1, "7/s"),
])
def test_rate_parse_reads_count_and_period(text, count, period, canonical):
    rate = rate_parse(text)
    assert rate == Rate(count=count, period_seconds=period)
    assert str(rate) == canonical
    assert rate_parse(str(rate)) == rate


@pytest.mark.parametrize("text", ["", "10", "10/", "/s", "ten/s", "10/ms", "10/w", "0/s", "10/0s", "-1/s",
                                  "1.5/s", "10/s/h", "10 per s"])
def test_rate_parse_rejects_with_a_clear_message(text):
    with pytest.raises(ValueError, match="invalid rate") as caught:
        rate_parse(text)
    assert repr(text) in str(caught.value)


# --- reservations ----------------------------------------------------------------------------
def test_slots_never_put_more_than_count_in_a_period(uid):
    """120 reservations from 4 threads at 50/s, spread 20 ms apart (plus the margin once a
    period); every two slots 50 apart are more than a second apart."""
    slots, lock = [], threading.Lock()

    def reserve():
        for _ in range(30):
            delay = slot_reserve(f"acct-{uid}", Rate(50, 1))
            with lock:
                slots.append(time.monotonic() + delay)

    threads = [threading.Thread(target=reserve) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    slots.sort()
    assert len(slots) == 120
    assert all(slots[i + 50] - slots[i] > 1.0 for i in range(len(slots) - 50))
    assert max_in_window(slots, 1.0) == 50
    assert 2.3 < slots[-1] - slots[0] < 2.6  # 119 × 20 ms + 2 margins of 5%: spread evenly


def test_slots_are_handed_out_in_arrival_order(uid):
    delays = [slot_reserve(f"acct-{uid}", rate_parse("10/s")) for _ in range(30)]
    # 100 ms apart, and every tenth waits the 5% margin more: a burst drains evenly.
    assert delays == pytest.approx([k * 0.1 + (k // 10) * 0.05 for k in range(30)], abs=0.03)
    assert all(later >= earlier - 0.05 for earlier, later in zip(delays, delays[1:]))


def test_margin_is_configurable(uid, settings):
    settings.NOTIFYHUB_RATE_LIMIT_MARGIN = 0.25
    assert slot_reserve(f"a-{uid}", Rate(1, 1)) == pytest.approx(0, abs=0.05)
    assert slot_reserve(f"a-{uid}", Rate(1, 1)) == pytest.approx(1.25, abs=0.05)
    assert slot_reserve(f"b-{uid}", Rate(1, 1), margin=0) == pytest.approx(0, abs=0.05)
    assert slot_reserve(f"b-{uid}", Rate(1, 1), margin=0) == pytest.approx(1.0, abs=0.05)


def test_a_slot_beyond_max_wait_is_not_reserved(uid):
    key, rate = f"acct-{uid}", rate_parse("1/s")
    assert slot_reserve(key, rate) == pytest.approx(0, abs=0.05)
    assert slot_reserve(key, rate, max_wait=0.5) == pytest.approx(1.05, abs=0.05)  # refused
    assert slot_reserve(key, rate, max_wait=0.5) == pytest.approx(1.05, abs=0.05)  # still the same slot
    assert slot_reserve(key, rate, max_wait=2) == pytest.approx(1.05, abs=0.05)  # reserved now
    assert slot_reserve(key, rate) == pytest.approx(2.10, abs=0.05)


def test_accounts_do_not_share_slots(uid):
    rate = rate_parse("1/m")
    assert slot_reserve(f"one-{uid}", rate) == 0
    assert slot_reserve(f"two-{uid}", rate) == 0
    assert slot_reserve(f"one-{uid}", rate) == pytest.approx(63.0, abs=0.1)


def test_sending_at_the_reserved_slots_keeps_the_rate(uid):
    """Three threads really wait for their slots at 50/s; the send times keep the rate."""
    sent, lock = [], threading.Lock()

    def send():
        for _ in range(40):
            time.sleep(slot_reserve(f"acct-{uid}", Rate(50, 1)))
            with lock:
                sent.append(time.time())

    threads = [threading.Thread(target=send) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(sent) == 120
    assert max_in_window(sent, 1.0) <= 50
    assert 2.3 < max(sent) - min(sent) < 2.8


def test_idle_accounts_leave_no_key(redis_uid):
    client = redis_client()
    key = f"acct-{redis_uid}"
    for _ in range(12):
        slot_reserve(key, Rate(5, 2))
    assert client.llen(f"notifyhub:rate:{key}") == 5  # only the last `count` slots are kept
    # the last slot is ~4.6 s ahead (11 × 0.4 s + 2 margins): kept until it has left its 2.1 s
    # window, plus 1 s
    assert 7000 < client.pttl(f"notifyhub:rate:{key}") <= 7800


def test_only_slots_inside_the_window_are_kept(redis_uid):
    """A large count ("600000/m") must not make the key hold that many slots: old ones go."""
    key = f"acct-{redis_uid}"
    for _ in range(20):
        slot_reserve(key, Rate(1000, 1))
    assert redis_client().llen(f"notifyhub:rate:{key}") == 20
    time.sleep(1.1)
    assert slot_reserve(key, Rate(1000, 1)) == 0
    assert redis_client().llen(f"notifyhub:rate:{key}") == 1


def test_local_store_drops_expired_keys():
    store = LocalStore()
    with store.lock:
        store.put("short", 1, ttl=0.05)
        store.put("long", 2, ttl=60)
        store.put("forever", 3)
    time.sleep(0.1)
    assert store.get("short") is None
    assert (store.get("long"), store.get("forever")) == (2, 3)
    assert len(store) == 2


def test_redis_client_is_none_without_redis_url(settings):
    settings.REDIS_URL = ""
    assert redis_client() is None


def test_redis_client_is_cached_per_url(redis_uid):
    assert redis_client() is redis_client()


# --- across processes --------------------------------------------------------------------------
SENDER = """
    import json, sys, time
    from channels_app.ratelimit import rate_parse, slot_reserve
    key, count, start_at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    time.sleep(max(0.0, start_at - time.time()))
    sent = []
    for _ in range(count):
        time.sleep(slot_reserve(key, rate_parse("10/s")))
        sent.append(time.time())
    print(json.dumps(sent))
"""


def test_two_processes_share_the_rate(redis_uid):
    """Two worker processes send 100 each at 10/s on one account: never 11 in a second, and the
    200 sends go out 100 ms apart (~20.9 s with the margin). Takes ~22 s."""
    start_at = time.time() + 2  # both start together once their interpreters are up
    first, second = run_children(SENDER, [[f"acct-{redis_uid}", "100", str(start_at)]] * 2)
    sent = sorted(first + second)
    assert len(sent) == 200
    assert max_in_window(sent, 1.0) <= 10
    assert 20.0 < sent[-1] - sent[0] < 21.8
    for own in (first, second):  # FIFO: a process asking for a slot never waits past the next window
        assert min(own) < sent[0] + 1.5
        assert max(later - earlier for earlier, later in zip(own, own[1:])) < 1.5
