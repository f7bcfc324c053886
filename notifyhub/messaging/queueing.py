"""Putting work on the broker, always after the transaction that wrote it commits.

Tasks are sent by name, so services need not import the task module. Delivery ids travel in
batches of ``NOTIFYHUB_DELIVER_BATCH_SIZE`` on the queue of their channel kind and lane:
``deliver.<kind>`` for bulk traffic, ``deliver.<kind>.tx`` for transactional traffic (critical
categories, high priority). A slow provider never starves another kind, and a large broadcast
never sits in front of a one-time password.
"""
from collections import defaultdict
from collections.abc import Iterable
from functools import partial

from celery import current_app
from django.conf import settings
from django.db import transaction

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


def _send(name: str, args: list, queue: str, countdown: float | None = None) -> None:
    current_app.send_task(name, args=args, queue=queue, countdown=countdown)


def deliveries_enqueue(*, deliveries: Iterable[tuple[str, str, object]], countdown: float | None = None) -> None:
    """Enqueue ``(channel, lane, delivery_id)`` in per-queue batches once the transaction commits."""
    by_queue: dict[str, list[str]] = defaultdict(list)
    for channel, lane, delivery_id in deliveries:
        by_queue[deliver_queue(channel, lane)].append(str(delivery_id))
    size = settings.NOTIFYHUB_DELIVER_BATCH_SIZE
    for queue, ids in by_queue.items():
        for start in range(0, len(ids), size):
            transaction.on_commit(partial(
                _send, "notifyhub.deliver_batch", [ids[start:start + size]], queue, countdown
            ))


def dispatch_enqueue(*, message_id, first_id: int | None = None, last_id: int | None = None) -> None:
    args = [str(message_id)] if first_id is None else [str(message_id), first_id, last_id]
    name = "notifyhub.dispatch_message" if first_id is None else "notifyhub.dispatch_chunk"
    transaction.on_commit(partial(_send, name, args, DISPATCH_QUEUE))
