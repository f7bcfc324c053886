"""In-app broadcast throughput against the floor: what plain psycopg needs to write the same rows.

Run with ``make bench PYTEST_ARGS="-k floor"`` (sizes: ``NOTIFYHUB_BENCH_SIZES=1000,10000,100000``).
For each size, one in-app message is accepted and drained by one worker started as ``make run``
starts it (prefork, ``--concurrency 2``, production recovery timings); accepted→sent is the time
from the acceptance to the last ``sent_at``. Then the floor: two processes of plain psycopg
write the same rows on the same database with the same batching — per 1,000-recipient chunk the
deliveries and their events (``COPY``), per 100-delivery batch the claim (one UPDATE), the inbox
entries (``COPY``) and the outcome (one UPDATE from ``unnest``) with its two events. The
benchmark prints both rates and their ratio, and deliveries/s per size (cost per delivery must
not grow with the broadcast).
"""
import json
import multiprocessing
import os
import time
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from django.conf import settings
from django.db.models import Max

from notifyhub.messaging.models import Delivery, Message
from notifyhub.messaging.services.accept import message_accept
from preferences.models import Recipient
from tests import factories
from tests.benchmarks.test_throughput import machine
from tests.conftest import wait_until

pytestmark = [pytest.mark.benchmark, pytest.mark.services, pytest.mark.django_db(transaction=True),
              pytest.mark.timeout(1800)]
SIZES = [int(n) for n in os.environ.get("NOTIFYHUB_BENCH_SIZES", "1000,10000,20000").split(",")]
RUN_SETTINGS = {"NOTIFYHUB_STUCK_SECONDS": 30, "NOTIFYHUB_SWEEP_SECONDS": 10, "NOTIFYHUB_QUEUED_CHECK_SECONDS": 30,
                "NOTIFYHUB_DUE_POLL_SECONDS": 2}


def _dsn() -> str:
    db = settings.DATABASES["default"]
    return (f"host={db.get('HOST') or '127.0.0.1'} port={db.get('PORT') or 5432} dbname={db['NAME']} "
            f"user={db.get('USER') or 'postgres'}" + (f" password={db['PASSWORD']}" if db.get("PASSWORD") else ""))


def _floor_part(dsn: str, message_id: str, recipients: list[tuple[int, str]], queue) -> None:
    """One process of the floor: dispatch chunks of 1,000, then deliver batches of 100."""
    explain = json.dumps(["category: allowed", "address: x", "queued for inapp (bulk lane)"])
    content = json.dumps({"title": "Hi A", "body": "Code 1"})
    with psycopg.connect(dsn) as conn:
        ids: list[uuid.UUID] = []
        for start in range(0, len(recipients), 1000):
            now = datetime.now(UTC)
            chunk = [(uuid.uuid4(), pk, key) for pk, key in recipients[start:start + 1000]]
            with conn.transaction(), conn.cursor() as cur:
                with cur.copy("COPY messaging_delivery (id, message_id, recipient_id, channel, address, app, lane, "
                              "content, status, reason, detail, explain, attempts, provider_message_id, followup, "
                              "created_at, updated_at) FROM STDIN") as copy:
                    for delivery_id, pk, key in chunk:
                        copy.write_row((delivery_id, message_id, pk, "inapp", key, "", "bulk", content, "queued", "",
                                        "", explain, 0, "", "", now, now))
                with cur.copy("COPY messaging_deliveryevent (delivery_id, at, status, detail, external_id) "
                              "FROM STDIN") as copy:
                    for delivery_id, _, _ in chunk:
                        copy.write_row((delivery_id, now, "queued", "queued for inapp", ""))
            ids += [row[0] for row in chunk]
        by_id = {d: key for d, (_, key) in zip(ids, recipients, strict=True)}
        for start in range(0, len(ids), 100):
            batch, token, now = ids[start:start + 100], uuid.uuid4(), datetime.now(UTC)
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("UPDATE messaging_delivery SET status = 'sending', claim_token = %s, claimed_at = %s, "
                            "updated_at = %s, attempts = attempts + 1 WHERE id = ANY(%s) AND status = 'queued' "
                            "RETURNING id, recipient_id, content, explain", (token, now, now, batch))
                claimed = cur.fetchall()
            with conn.transaction(), conn.cursor() as cur, cur.copy(
                    "COPY channels_app_inboxentry (recipient_key, delivery_id, title, body, url, data, created_at) "
                    "FROM STDIN") as copy:
                for row in claimed:
                    copy.write_row((by_id[row[0]], row[0], "Hi A", "Code 1", "", json.dumps({}), now))
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("UPDATE messaging_delivery AS d SET status = 'sent', sent_at = %s, updated_at = %s, "
                            "provider_message_id = v.id::text, explain = v.explain::jsonb, claim_token = NULL "
                            "FROM unnest(%s::uuid[], %s::text[]) AS v(id, explain) "
                            "WHERE d.id = v.id AND d.claim_token = %s AND d.status = 'sending'",
                            (now, now, [r[0] for r in claimed], [explain] * len(claimed), token))
                with cur.copy("COPY messaging_deliveryevent (delivery_id, at, status, detail, external_id) "
                              "FROM STDIN") as copy:
                    for row in claimed:
                        copy.write_row((row[0], now, "sending", "attempt 1", ""))
                        copy.write_row((row[0], now, "sent", "attempt 1: sent", ""))
    queue.put(len(ids))


def floor_rate(n: int) -> float:
    """Deliveries/s of the plain-psycopg floor for ``n`` deliveries, two processes."""
    template = factories.template(content={"inapp": {"title": "Hi {{ name }}", "body": "Code {{ code }}"}})
    message = Message.objects.create(template=template, status="processing", recipient_count=n)
    prefix = uuid.uuid4().hex[:6]
    people = Recipient.objects.bulk_create([Recipient(external_id=f"{prefix}-{i}") for i in range(n)],
                                           batch_size=5000)
    pairs = [(p.pk, p.external_id) for p in people]
    queue = multiprocessing.get_context("fork").Queue()
    half = len(pairs) // 2
    procs = [multiprocessing.get_context("fork").Process(target=_floor_part, args=(_dsn(), str(message.pk), part,
                                                                                  queue))
             for part in (pairs[:half], pairs[half:])]
    started = time.monotonic()
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    elapsed = time.monotonic() - started
    assert sum(queue.get() for _ in procs) == n
    assert Delivery.objects.filter(message=message, status="sent").count() == n
    return n / elapsed


def hub_rate(n: int) -> float:
    factories.inapp_channel()
    template = factories.template(content={"inapp": {"title": "Hi {{ name }}", "body": "Code {{ code }}"}})
    prefix = uuid.uuid4().hex[:6]
    Recipient.objects.bulk_create([Recipient(external_id=f"{prefix}-{i}") for i in range(n)], batch_size=5000)
    message = message_accept(api_key=None, template=template, to=[f"{prefix}-{i}" for i in range(n)],
                             context={"name": "A", "code": "1"})
    wait_until(lambda: Delivery.objects.filter(message=message, status="sent").count() == n,
               timeout=1200, interval=0.5, message=f"{n} in-app deliveries")
    last = Delivery.objects.filter(message=message).aggregate(last=Max("sent_at"))["last"]
    return n / (last - message.created_at).total_seconds()


def test_inapp_broadcast_against_the_floor(start_worker):
    start_worker(name="run", concurrency=2, **RUN_SETTINGS)
    print(f"\nmachine: {machine()}")
    rates = {}
    for n in SIZES:
        rates[n] = hub_rate(n)
        print(f"notifyhub: {n:>7,} in-app deliveries accepted→sent at {rates[n]:,.0f}/s")
    n = max(SIZES)
    floor = floor_rate(n)
    print(f"floor (plain psycopg, same rows and batching, 2 processes): {n:,} at {floor:,.0f}/s")
    print(f"notifyhub / floor at {n:,}: {rates[n] / floor:.0%}")
    if len(SIZES) > 1:
        small, large = sorted(SIZES)[-2:]
        print(f"cost growth: {large:,} vs {small:,}: {rates[large] / rates[small]:.0%} of the rate")
    assert all(rate > 0 for rate in rates.values())
