"""Priority lanes: a one-time password is not delayed by a bulk broadcast.

Run with `make bench` (or `pytest tests/benchmarks/test_lanes.py --benchmarks -s`). Two worker
processes as in deploy/: one serves the bulk lane (``deliver.<kind>`` plus dispatch and
maintenance), one the transactional lane (``deliver.<kind>.tx``). A transactional in-app
message (priority high) is sent every 100 ms, first with the hub idle, then while a broadcast
of 20,000 in-app deliveries drains; the benchmark prints the p50/p99 latency (delivery
``sent_at`` minus message acceptance) of both phases, the broadcast's drain rate and the
machine, and checks that the p99 under load stays within 2× of the idle p99.
"""
import json
import os
import time

import pytest
from django.db.models import Max

from notifyhub.messaging.models import Delivery, Message
from preferences.models import Recipient
from tests import factories
from tests.benchmarks.test_throughput import machine, percentile
from tests.conftest import wait_until

pytestmark = [pytest.mark.benchmark, pytest.mark.services, pytest.mark.django_db(transaction=True),
              pytest.mark.timeout(1200)]

BULK = int(os.environ.get("NOTIFYHUB_BENCH_BULK", 20_000))
BULK_CONCURRENCY = int(os.environ.get("NOTIFYHUB_BENCH_BULK_CONCURRENCY", 1))
PROBES_IDLE = 100
KINDS = ("email", "inapp", "webhook", "sms", "push", "wechat", "chat")
BULK_QUEUES = ",".join(["default", "dispatch", "maintenance", *(f"deliver.{k}" for k in KINDS)])
TX_QUEUES = ",".join(f"deliver.{k}.tx" for k in KINDS)


def probe(api, template, person) -> str:
    response = api.post("/api/v1/messages", content_type="application/json", data=json.dumps({
        "template": template.key, "to": [person.external_id], "priority": "high",
        "context": {"name": "otp", "code": "913"}}))
    assert response.status_code == 202, response.content
    return response.json()["id"]


def latencies(message_ids) -> list[float]:
    wait_until(lambda: Delivery.objects.filter(message_id__in=message_ids, status="sent").count() == len(message_ids),
               timeout=120, message="probes sent")
    rows = Delivery.objects.filter(message_id__in=message_ids).values_list("sent_at", "message__created_at")
    return [(sent - created).total_seconds() * 1000 for sent, created in rows]


def breakdown(message_ids) -> str:
    """Where the time of the slowest probes went: accept → claimed by a worker → sent."""
    from notifyhub.messaging.models import DeliveryEvent

    claimed = dict(DeliveryEvent.objects.filter(delivery__message_id__in=message_ids, status="sending")
                   .values_list("delivery__message_id", "at"))
    rows = Delivery.objects.filter(message_id__in=message_ids).values_list("message_id", "message__created_at",
                                                                           "created_at", "sent_at")
    parts = sorted(((sent - accepted).total_seconds(), (created - accepted).total_seconds(),
                    (claimed[mid] - created).total_seconds(), (sent - claimed[mid]).total_seconds())
                   for mid, accepted, created, sent in rows)[-5:]
    return "; ".join(f"total {t * 1000:.0f} = plan {a * 1000:.0f} + wait {w * 1000:.0f} + send {s * 1000:.0f} ms"
                     for t, a, w, s in parts)


def probe_every_100ms(api, template, person, *, count=None, until=None) -> list[str]:
    ids, next_at = [], time.monotonic()
    while (count is not None and len(ids) < count) or (until is not None and not until()):
        ids.append(probe(api, template, person))
        next_at += 0.1
        time.sleep(max(0.0, next_at - time.monotonic()))
    return ids


def test_transactional_latency_with_and_without_bulk_load(api, start_worker):
    factories.inapp_channel()
    template = factories.template(content={"inapp": {"title": "Code", "body": "{{ name }} {{ code }}"}})
    person = factories.recipient()
    people = Recipient.objects.bulk_create([Recipient(external_id=f"lane-{i}") for i in range(BULK)])
    # As deploy/ recommends when both lanes share a host: the bulk lane runs at a lower CPU priority.
    production = {"NOTIFYHUB_STUCK_SECONDS": 30, "NOTIFYHUB_SWEEP_SECONDS": 10, "NOTIFYHUB_QUEUED_CHECK_SECONDS": 30,
                  "NOTIFYHUB_DUE_POLL_SECONDS": 2}
    start_worker(name="bulk", concurrency=BULK_CONCURRENCY, queues=BULK_QUEUES, nice=10, **production)
    start_worker(name="tx", concurrency=4, pool="threads", beat=False, queues=TX_QUEUES, **production)

    latencies(probe_every_100ms(api, template, person, count=10))  # warm-up: connections, caches
    idle_ids = probe_every_100ms(api, template, person, count=PROBES_IDLE)
    idle = latencies(idle_ids)

    started = time.monotonic()
    bulk_ids = []
    for start in range(0, BULK, 10_000):
        response = api.post("/api/v1/messages", content_type="application/json", data=json.dumps({
            "template": template.key, "to": [p.external_id for p in people[start:start + 10_000]],
            "context": {"name": "news", "code": "0"}}))
        assert response.status_code == 202, response.content
        bulk_ids.append(response.json()["id"])

    def bulk_done():
        return not Delivery.objects.filter(message_id__in=bulk_ids).exclude(status="sent").exists() and \
            Delivery.objects.filter(message_id__in=bulk_ids).count() == BULK

    loaded_ids = probe_every_100ms(api, template, person, until=bulk_done)
    drained = time.monotonic() - started
    loaded = latencies(loaded_ids)
    last_sent = Delivery.objects.filter(message_id__in=bulk_ids).aggregate(last=Max("sent_at"))["last"]
    first_accepted = Message.objects.filter(pk__in=bulk_ids).order_by("created_at").first().created_at
    bulk_seconds = (last_sent - first_accepted).total_seconds()

    p50_idle, p99_idle = percentile(idle, 50), percentile(idle, 99)
    p50_load, p99_load = percentile(loaded, 50), percentile(loaded, 99)
    print(f"\nmachine: {machine()}")
    print(f"workers: bulk lane (concurrency {BULK_CONCURRENCY}, nice 10) + transactional lane (threads pool, "
          "concurrency 4)")
    print(f"idle:      {len(idle)} transactional messages, p50 {p50_idle:.0f} ms, p99 {p99_idle:.0f} ms")
    print(f"with bulk: {len(loaded)} transactional messages, p50 {p50_load:.0f} ms, p99 {p99_load:.0f} ms")
    print(f"bulk: {BULK} in-app deliveries drained in {bulk_seconds:.1f} s ({BULK / bulk_seconds:.0f}/s; "
          f"{drained:.1f} s wall clock)")
    print(f"p99 ratio with/without load: {p99_load / p99_idle:.2f}")
    print(f"slowest idle: {breakdown(idle_ids)}")
    print(f"slowest with bulk: {breakdown(loaded_ids)}")
    assert p99_load <= 2 * p99_idle, f"transactional p99 {p99_load:.0f} ms under load vs {p99_idle:.0f} ms idle"
