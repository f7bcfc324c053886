"""The per-account circuit breaker: closed → open → half-open with exactly one probe across
threads and processes, on Redis and in process memory."""
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from channels_app.breaker import (
    breaker_allow,
    breaker_failure,
    breaker_reset,
    breaker_state,
    breaker_success,
)
from channels_app.redis_conn import redis_client
from tests.conftest import ROOT, require_redis

POLICY = {"failure_threshold": 3, "open_seconds": 0.4}


@pytest.fixture
def redis_account():
    """An account id unique to this test on real Redis; its key is deleted afterwards."""
    require_redis()
    account = f"acct-{uuid.uuid4().hex}"
    yield account
    redis_client().delete(f"notifyhub:breaker:{account}")


@pytest.fixture(params=["redis", "memory"])
def account(request, settings):
    """Run the test on Redis and on the in-memory fallback (REDIS_URL empty)."""
    if request.param == "memory":
        settings.REDIS_URL = ""
        yield f"acct-{uuid.uuid4().hex}"
    else:
        yield request.getfixturevalue("redis_account")


def open_breaker(account) -> None:
    breaker_failure(account, account_level=True, **POLICY)
    assert breaker_state(account)["state"] == "open"


def test_opens_after_consecutive_failures(account):
    assert breaker_allow(account, **POLICY) == (True, "closed", False)
    assert breaker_failure(account, **POLICY) == ("closed", 1, False)
    assert breaker_failure(account, **POLICY) == ("closed", 2, False)
    assert breaker_allow(account, **POLICY).allowed
    assert breaker_failure(account, **POLICY) == ("open", 3, True)
    assert breaker_allow(account, **POLICY) == (False, "open", False)
    state = breaker_state(account)
    assert state["state"] == "open" and state["failures"] == 3
    # the Redis server's clock, on this same machine
    assert abs(state["opened_at"] - datetime.now(UTC)) < timedelta(seconds=2)
    assert abs(state["reopen_at"] - state["opened_at"] - timedelta(seconds=0.4)) < timedelta(milliseconds=1)


def test_success_resets_the_count(account):
    breaker_failure(account, **POLICY)
    breaker_failure(account, **POLICY)
    assert breaker_success(account) is False  # it was closed: nothing to announce
    assert breaker_state(account)["failures"] == 0
    assert breaker_failure(account, **POLICY) == ("closed", 1, False)
    assert breaker_failure(account, **POLICY) == ("closed", 2, False)
    assert breaker_allow(account, **POLICY).allowed


def test_account_level_error_opens_at_once(account):
    assert breaker_failure(account, account_level=True, **POLICY) == ("open", 1, True)
    assert breaker_allow(account, **POLICY) == (False, "open", False)


def test_failures_while_open_do_not_extend_it(account):
    open_breaker(account)
    reopen_at = breaker_state(account)["reopen_at"]
    time.sleep(0.1)
    assert breaker_failure(account, account_level=True, **POLICY) == ("open", 2, False)
    assert breaker_state(account)["reopen_at"] == reopen_at


def test_after_open_seconds_exactly_one_thread_probes(account):
    open_breaker(account)
    time.sleep(0.2)
    assert not breaker_allow(account, **POLICY).allowed  # still open
    time.sleep(0.25)
    start = threading.Barrier(16)
    decisions, lock = [], threading.Lock()

    def ask():
        start.wait()
        for _ in range(20):
            decision = breaker_allow(account, **POLICY)
            with lock:
                decisions.append(decision)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(decisions) == 320
    assert [d for d in decisions if d.allowed] == [(True, "half_open", True)]
    assert breaker_state(account)["state"] == "half_open"


def test_probe_success_closes(account):
    open_breaker(account)
    time.sleep(0.45)
    assert breaker_allow(account, **POLICY) == (True, "half_open", True)
    assert breaker_success(account) is True
    assert breaker_state(account) == {"state": "closed", "failures": 0, "opened_at": None, "reopen_at": None,
                                      "probe_until": None}
    assert all(breaker_allow(account, **POLICY) == (True, "closed", False) for _ in range(5))


def test_probe_failure_reopens_for_another_period(account):
    open_breaker(account)
    time.sleep(0.45)
    assert breaker_allow(account, **POLICY).probe
    before = datetime.now(UTC)
    assert breaker_failure(account, **POLICY) == ("open", 2, True)  # a transient failure suffices
    state = breaker_state(account)
    assert state["state"] == "open"
    assert state["opened_at"] >= before - timedelta(seconds=1)  # opened anew, not at the first opening
    assert not breaker_allow(account, **POLICY).allowed
    time.sleep(0.45)
    assert breaker_allow(account, **POLICY) == (True, "half_open", True)


def test_a_lost_probe_is_replaced_after_the_probe_timeout(account):
    open_breaker(account)
    time.sleep(0.45)
    assert breaker_allow(account, probe_timeout=0.3, **POLICY).probe  # this probe never reports back
    assert not breaker_allow(account, probe_timeout=0.3, **POLICY).allowed
    time.sleep(0.35)
    assert breaker_allow(account, probe_timeout=0.3, **POLICY) == (True, "half_open", True)
    assert not breaker_allow(account, probe_timeout=0.3, **POLICY).allowed


def test_reset_closes_and_forgets(account):
    open_breaker(account)
    breaker_reset(account)
    assert breaker_state(account)["state"] == "closed"
    assert breaker_state(account)["failures"] == 0
    assert breaker_allow(account, **POLICY) == (True, "closed", False)
    assert breaker_failure(account, **POLICY) == ("closed", 1, False)


def test_accounts_are_independent(account):
    open_breaker(account)
    assert breaker_allow(f"{account}-other", **POLICY) == (True, "closed", False)


def test_closed_failures_expire_and_open_state_persists(redis_account):
    client = redis_client()
    key = f"notifyhub:breaker:{redis_account}"
    breaker_failure(redis_account, **POLICY)
    assert 0 < client.ttl(key) <= 86400  # stale "consecutive" failures are forgotten
    open_breaker(redis_account)
    assert client.ttl(key) == -1  # an open breaker stays open until a probe or a reset
    breaker_success(redis_account)
    assert not client.exists(key)


def test_threshold_must_be_positive(account):
    with pytest.raises(ValueError, match="failure_threshold"):
        breaker_failure(account, failure_threshold=0, open_seconds=1)


PROBER = """
    import json, sys, time
    from channels_app.breaker import breaker_allow
    account, start_at, stop_at = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    time.sleep(max(0.0, start_at - time.time()))
    calls, probes = [], []
    while time.time() < stop_at:
        decision = breaker_allow(account, failure_threshold=3, open_seconds=5)
        calls.append(time.time())
        if decision.probe:
            probes.append(time.time())
    print(json.dumps({"calls": calls, "probes": probes}))
"""


def test_exactly_one_process_probes(redis_account):
    """Two processes ask in a tight loop while the open period runs out: one probe in all.

    The open period leaves the processes 4.5 s to start (imports take seconds on a busy host)."""
    breaker_failure(redis_account, account_level=True, failure_threshold=3, open_seconds=5)
    now = time.time()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "notifyhub.settings",
           "REDIS_URL": settings.REDIS_URL}
    argv = [sys.executable, "-c", textwrap.dedent(PROBER), redis_account, str(now + 4.5), str(now + 5.6)]
    procs = [subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    probes = [t for r in results for t in r["probes"]]
    assert len(probes) == 1
    for r in results:  # both processes were asking before and after the breaker half-opened
        assert min(r["calls"]) < probes[0] < max(r["calls"])
