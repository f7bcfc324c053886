"""The message roll-up with 100,000 open deliveries, on PostgreSQL: its cost must not grow with
the broadcast. Run with ``make bench PYTEST_ARGS="-k rollup"``; prints the figures and the machine.

The roll-up runs after every deliver batch, dispatch chunk and provider report. It is timed here
on a message with 100,000 open deliveries (the state during a broadcast) and on one with 100,000
finished deliveries (the one full count at the end), against the floor of a bare primary-key
read of the message row measured in the same run.
"""
import statistics
import time
import uuid

import pytest
from django.db import connection
from django.utils import timezone

from notifyhub.messaging.models import Delivery, Message
from notifyhub.messaging.services.rollup import messages_rollup
from preferences.models import Recipient
from tests import factories
from tests.benchmarks.test_throughput import machine

pytestmark = [pytest.mark.benchmark, pytest.mark.services, pytest.mark.django_db(transaction=True),
              pytest.mark.timeout(900)]
N = 100_000


def _broadcast(status: str) -> Message:
    template = factories.template()
    message = Message.objects.create(template=template, status="processing", recipient_count=N)
    prefix = uuid.uuid4().hex[:6]
    recipients = Recipient.objects.bulk_create([Recipient(external_id=f"{prefix}-{i}") for i in range(N)],
                                               batch_size=5000)
    now = timezone.now()
    Delivery.objects.bulk_create([Delivery(message=message, recipient=r, channel="inapp", status=status,
                                           created_at=now, updated_at=now) for r in recipients], batch_size=5000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return message


def _timed(fn, runs: int = 50) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return times


def test_rollup_with_100k_open_deliveries():
    open_message = _broadcast("queued")
    finished = _broadcast("sent")
    during = _timed(lambda: messages_rollup(message_ids=[open_message.pk]))
    floor = _timed(lambda: list(Message.objects.filter(pk=open_message.pk).values_list("status")))
    end = _timed(lambda: (Message.objects.filter(pk=finished.pk).update(status="processing"),
                          messages_rollup(message_ids=[finished.pk])), runs=5)
    p50, floor50 = statistics.median(during), statistics.median(floor)
    print(f"\n{machine()}")
    print(f"roll-up, {N:,} open deliveries: p50 {p50:.2f} ms, max {max(during):.2f} ms "
          f"(bare message read {floor50:.2f} ms; ratio {p50 / floor50:.1f}x)")
    print(f"roll-up, {N:,} finished deliveries (the one full count): p50 {statistics.median(end):.1f} ms")
    assert Message.objects.get(pk=finished.pk).status == "sent"
    assert p50 <= 5.0
