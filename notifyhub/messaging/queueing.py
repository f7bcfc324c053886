"""Putting work on the broker, always after the transaction that wrote it commits.

Tasks are sent by name, so services need not import the task module. Delivery ids travel in
batches of ``NOTIFYHUB_DELIVER_BATCH_SIZE`` on the queue of their channel kind and lane:
``deliver.<kind>`` for bulk traffic, ``deliver.<kind>.tx`` for transactional traffic (critical
categories, high priority). A slow provider never starves another kind, and a large broadcast
never sits in front of a one-time password.
"""
import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifyhub.messaging.models import Delivery, DeliveryStatus, DispatchChunk

DISPATCH_QUEUE = "dispatch"
MAINTENANCE_QUEUE = "maintenance"


TRANSACTIONAL = "transactional"
BULK = "bulk"
LANES = (TRANSACTIONAL, BULK)


def deliver_queue(channel: str, lane: str = BULK) -> str:
    return f"deliver.{channel}.tx" if lane == TRANSACTIONAL else f"deliver.{channel}"


def all_queues(kinds) -> list[str]:
    """Every queue a worker serving all lanes of ``kinds`` reads."""
    return [deliver_queue(kind, lane) for kind in kinds for lane in LANES]


@dataclass
class Batch:
    """One broker message: the deliveries one ``deliver_batch`` task carries, and its task id."""

    queue: str
    items: list
    task_id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def kind(self) -> str:
        return self.queue.split(".")[1]

    @property
    def ids(self) -> list[str]:
        return [str(getattr(item, "pk", item)) for item in self.items]


def _send(name: str, args: list, queue: str, countdown: float | None = None, task_id=None) -> None:
    current_app.send_task(name, args=args, queue=queue, countdown=countdown,
                          task_id=str(task_id) if task_id else None)


def deliveries_batch(*, deliveries: Iterable[tuple[str, str, object]]) -> list[Batch]:
    """Group ``(channel, lane, delivery or id)`` into per-queue batches of the configured size."""
    by_queue: dict[str, list] = defaultdict(list)
    for channel, lane, item in deliveries:
        by_queue[deliver_queue(channel, lane)].append(item)
    size = settings.NOTIFYHUB_DELIVER_BATCH_SIZE
    return [Batch(queue, items[start:start + size])
            for queue, items in by_queue.items() for start in range(0, len(items), size)]


def deliveries_enqueue(*, batches: Iterable[Batch], countdown: float | None = None) -> None:
    """Send each batch once the transaction commits, under its own task id.

    The caller has stored the task id on the batch's rows (``Delivery.enqueue_id``), in the same
    transaction, so the sweeper can later ask the broker whether that message still exists.
    """
    for batch in batches:
        transaction.on_commit(partial(_send, "notifyhub.deliver_batch", [batch.ids, batch.kind], batch.queue,
                                      countdown, batch.task_id))


def deliveries_requeue(*, deliveries: Iterable[tuple[str, str, object]], expect: dict, **changes) -> int:
    """Mark deliveries ``queued`` with a fresh task id per batch and enqueue them on commit.

    One UPDATE per batch, touching only rows that still match ``expect`` (filter kwargs: the
    status the caller saw); ``changes`` are extra fields to set. A batch that moved no row sends
    no task. Returns the number of rows moved.
    """
    moved = 0
    now = timezone.now()
    for batch in deliveries_batch(deliveries=deliveries):
        count = Delivery.objects.filter(pk__in=batch.ids, **expect).update(
            status=DeliveryStatus.QUEUED, enqueue_id=batch.task_id, updated_at=now, **changes)
        if count:
            deliveries_enqueue(batches=[batch])
        moved += count
    return moved


def task_send_on_commit(name: str, args: list, queue: str, countdown: float | None = None) -> None:
    """Send a task by name once the transaction commits."""
    transaction.on_commit(partial(_send, name, args, queue, countdown))


def dispatch_enqueue(*, message_id) -> None:
    transaction.on_commit(partial(_send, "notifyhub.dispatch_message", [str(message_id)], DISPATCH_QUEUE))


def chunk_enqueue(*, chunk_id: int, previous=False) -> int:
    """Enqueue a dispatch chunk under a new task id stored on its row (as deliveries do), so the
    sweeper can tell a lost chunk task from one waiting in the dispatch queue. With ``previous``
    (the task id the caller saw), only if nobody re-enqueued it meanwhile; returns 1 if sent."""
    task_id = uuid.uuid4()
    rows = DispatchChunk.objects.filter(pk=chunk_id)
    if previous is not False:
        rows = rows.filter(enqueue_id=previous) if previous else rows.filter(enqueue_id__isnull=True)
    if not rows.update(enqueue_id=task_id, updated_at=timezone.now()):
        return 0
    transaction.on_commit(partial(_send, "notifyhub.dispatch_chunk", [chunk_id], DISPATCH_QUEUE, None, task_id))
    return 1
