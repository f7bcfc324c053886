"""Per-recipient frequency caps and duplicate suppression: exact across processes on Redis, the
same semantics in process memory without it."""
import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta

from django.conf import settings

from channels_app.redis_conn import redis_client
from notifyhub.messaging.limits import (
    CapDecision,
    content_fingerprint,
    duplicate_check,
    duplicate_forget,
    duplicate_peek,
    frequency_cap_peek,
    frequency_cap_release,
    frequency_cap_take,
)
from tests.conftest import ROOT

DAY = 86400


def take(uid, token, *, limit=3, period=DAY, category="marketing", channel="sms") -> CapDecision:
    return frequency_cap_take(recipient_id=f"r-{uid}", category=category, channel=channel, limit=limit,
                              period_seconds=period, token=token)


# --- frequency caps ----------------------------------------------------------------------------
def test_cap_refuses_the_fourth_of_three_a_day(uid):
    before = datetime.now(UTC)
    assert [take(uid, f"d{i}")[:2] for i in range(3)] == [(True, 1), (True, 2), (True, 3)]
    refused = take(uid, "d3")
    assert (refused.allowed, refused.count) == (False, 3)
    # a unit frees up when the first take leaves the day-long window
    assert abs(refused.retry_at - (before + timedelta(days=1))) < timedelta(seconds=2)
    assert take(uid, "d4").allowed is False


def test_the_same_delivery_takes_once(uid):
    assert take(uid, "d1") == (True, 1, None)
    assert take(uid, "d1") == (True, 1, None)  # a retried delivery is still allowed, not counted again
    assert take(uid, "d2") == (True, 2, None)
    assert take(uid, "d3") == (True, 3, None)
    assert take(uid, "d1") == (True, 3, None)  # even when the cap is full
    assert take(uid, "d4").allowed is False


def test_the_window_rolls(uid):
    assert take(uid, "a", limit=2, period=1).allowed
    time.sleep(0.3)
    assert take(uid, "b", limit=2, period=1).allowed
    refused = take(uid, "c", limit=2, period=1)
    assert not refused.allowed
    wait = (refused.retry_at - datetime.now(UTC)).total_seconds()
    assert 0.3 < wait < 0.75  # "a" leaves ~0.7 s from now, "b" only 0.3 s later
    time.sleep(wait + 0.02)
    assert take(uid, "c", limit=2, period=1) == (True, 2, None)  # "a" left, "b" is still in
    assert not take(uid, "d", limit=2, period=1).allowed


def test_retry_at_accounts_for_a_lowered_limit(uid):
    first = datetime.now(UTC)
    take(uid, "a", limit=3, period=60)
    time.sleep(0.3)
    take(uid, "b", limit=3, period=60)
    take(uid, "c", limit=3, period=60)
    refused = take(uid, "d", limit=2, period=60)
    assert (refused.allowed, refused.count) == (False, 3)
    # with 3 in the window and a limit of 2, "a" *and* "b" must leave before one is free
    assert refused.retry_at - first > timedelta(seconds=60.2)


def test_caps_are_per_category_and_channel(uid):
    for i in range(3):
        take(uid, f"d{i}")
    assert take(uid, "e", channel="email").allowed
    assert take(uid, "f", category="security").allowed
    assert not take(uid, "g").allowed


def test_release_gives_the_unit_back(uid):
    for i in range(3):
        take(uid, f"d{i}")
    assert not take(uid, "d3").allowed
    assert frequency_cap_release(recipient_id=f"r-{uid}", category="marketing", channel="sms", token="d1") is True
    assert frequency_cap_release(recipient_id=f"r-{uid}", category="marketing", channel="sms", token="d1") is False
    assert take(uid, "d3") == (True, 3, None)


def test_peek_answers_like_take_without_taking(uid):
    def peek(token):
        return frequency_cap_peek(recipient_id=f"r-{uid}", category="marketing", channel="sms", limit=3,
                                  period_seconds=DAY, token=token)

    assert peek("d1") == (True, 1, None)
    assert peek("d1") == (True, 1, None)  # nothing was taken
    take(uid, "d1")
    assert peek("d1") == (True, 1, None)  # d1 holds its unit
    assert peek("d2") == (True, 2, None)
    take(uid, "d2")
    take(uid, "d3")
    refused = take(uid, "d4")
    assert peek("d4") == refused and not refused.allowed
    assert peek("d2") == (True, 3, None)


def test_limit_zero_never_allows(uid):
    assert take(uid, "d1", limit=0) == (False, 0, None)


def test_cap_key_expires_with_its_window(redis_uid):
    take(redis_uid, "d1", period=60)
    [key] = redis_client().keys(f"*{redis_uid}*")
    assert 60000 < redis_client().pttl(key) <= 61000


TAKER = """
    import json, sys, time
    from notifyhub.messaging.limits import frequency_cap_take
    uid, name, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
    time.sleep(max(0.0, start_at - 0.05 - time.time()))
    while time.time() < start_at:  # start within microseconds of the other process
        pass
    allowed, first = [0] * RECIPIENTS, time.time()
    for i in range(50):
        for k in range(RECIPIENTS):
            allowed[k] += frequency_cap_take(recipient_id=f"r-{uid}-{k}", category="news", channel="push",
                                             limit=30, period_seconds=3600, token=f"{name}-{i}").allowed
    print(json.dumps({"allowed": allowed, "first": first, "last": time.time()}))
"""
RECIPIENTS = 20


def test_cap_is_exact_across_processes(redis_uid):
    """Two processes take 50 times each, at the same moment, on a limit of 30: exactly 30 pass.

    The contest runs on 20 recipients at once, so that the two processes race for the last unit
    20 times: a check-then-add that is not atomic lets 31 through in some of them."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DJANGO_SETTINGS_MODULE": "notifyhub.settings",
           "REDIS_URL": settings.REDIS_URL}
    code = textwrap.dedent(TAKER).replace("RECIPIENTS", str(RECIPIENTS))
    start_at = str(time.time() + 2)
    procs = [subprocess.Popen([sys.executable, "-c", code, redis_uid, name, start_at], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in ("one", "two")]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    one, two = results
    assert one["first"] < two["last"] and two["first"] < one["last"], "the processes did not run concurrently"
    assert [a + b for a, b in zip(one["allowed"], two["allowed"])] == [30] * RECIPIENTS
    assert all(redis_client().zcard(f"notifyhub:fcap:r-{redis_uid}-{k}:push:news") == 30 for k in range(RECIPIENTS))


# --- duplicates --------------------------------------------------------------------------------
def test_a_duplicate_within_the_window_names_the_first_delivery(uid):
    fingerprint = f"fp-{uid}"
    assert duplicate_check(fingerprint=fingerprint, window_seconds=600, token="d1") is None
    assert duplicate_check(fingerprint=fingerprint, window_seconds=600, token="d2") == "d1"
    assert duplicate_check(fingerprint=fingerprint, window_seconds=600, token="d3") == "d1"


def test_the_same_delivery_rerunning_is_not_a_duplicate(uid):
    fingerprint = f"fp-{uid}"
    assert duplicate_check(fingerprint=fingerprint, window_seconds=600, token="d1") is None
    assert duplicate_check(fingerprint=fingerprint, window_seconds=600, token="d1") is None


def test_after_the_window_the_content_may_go_again(uid):
    fingerprint = f"fp-{uid}"
    assert duplicate_check(fingerprint=fingerprint, window_seconds=1, token="d1") is None
    assert duplicate_check(fingerprint=fingerprint, window_seconds=1, token="d2") == "d1"
    time.sleep(1.05)
    assert duplicate_check(fingerprint=fingerprint, window_seconds=1, token="d2") is None
    assert duplicate_check(fingerprint=fingerprint, window_seconds=1, token="d3") == "d2"


def test_duplicate_peek_records_nothing(uid):
    fingerprint = f"fp-{uid}"
    assert duplicate_peek(fingerprint=fingerprint, token="d1") is None
    assert duplicate_check(fingerprint=fingerprint, window_seconds=600, token="d2") is None  # d1 left no trace
    assert duplicate_peek(fingerprint=fingerprint, token="d1") == "d2"
    assert duplicate_peek(fingerprint=fingerprint, token="d2") is None


def test_forget_only_drops_the_own_fingerprint(uid):
    fingerprint = f"fp-{uid}"
    duplicate_check(fingerprint=fingerprint, window_seconds=600, token="d1")
    assert duplicate_forget(fingerprint=fingerprint, token="d2") is False
    assert duplicate_check(fingerprint=fingerprint, window_seconds=600, token="d2") == "d1"
    assert duplicate_forget(fingerprint=fingerprint, token="d1") is True
    assert duplicate_check(fingerprint=fingerprint, window_seconds=600, token="d2") is None


def test_content_fingerprint_is_canonical():
    content = {"subject": "Sale", "body": {"text": "Grüße", "html": "<p>Grüße</p>"}}
    reordered = {"body": {"html": "<p>Grüße</p>", "text": "Grüße"}, "subject": "Sale"}
    fingerprint = content_fingerprint("promo", 7, "email", content)
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0
    assert content_fingerprint("promo", "7", "email", reordered) == fingerprint
    others = {content_fingerprint("promo", 8, "email", content), content_fingerprint("promo", 7, "sms", content),
              content_fingerprint("other", 7, "email", content),
              content_fingerprint("promo", 7, "email", {**content, "subject": "Sale!"})}
    assert fingerprint not in others and len(others) == 4
    # the same in another interpreter with another hash seed (workers are separate processes)
    code = ("from notifyhub.messaging.limits import content_fingerprint; import json, sys; "
            "print(content_fingerprint('promo', 7, 'email', json.loads(sys.argv[1])))")
    out = subprocess.run([sys.executable, "-c", code, json.dumps(reordered)], cwd=ROOT, capture_output=True,
                         text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "123"})
    assert out.stdout.strip() == fingerprint
