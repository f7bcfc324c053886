"""Putting work on the broker, always after the transaction that wrote it commits.

Tasks are sent by name, so services need not import the task module. Delivery ids travel in
batches of ``NOTIFYHUB_DELIVER_BATCH_SIZE`` on the queue of their channel kind
(``deliver.email``, ``deliver.webhook``...), so a slow provider never starves another kind.
"""
from collections import defaultdict
from collections.abc import Iterable
from functools import partial

from celery import current_app
from django.conf import settings
from django.db import transaction

DISPATCH_QUEUE = "dispatch"
MAINTENANCE_QUEUE = "maintenance"


def deliver_queue(channel: str) -> str:
    return f"deliver.{channel}"


def _send(name: str, args: list, queue: str, countdown: float | None = None) -> None:
    current_app.send_task(name, args=args, queue=queue, countdown=countdown)


def deliveries_enqueue(*, deliveries: Iterable[tuple[str, object]], countdown: float | None = None) -> None:
    """Enqueue ``(channel, delivery_id)`` pairs in per-kind batches once the transaction commits."""
    by_channel: dict[str, list[str]] = defaultdict(list)
    for channel, delivery_id in deliveries:
        by_channel[channel].append(str(delivery_id))
    size = settings.NOTIFYHUB_DELIVER_BATCH_SIZE
    for channel, ids in by_channel.items():
        for start in range(0, len(ids), size):
            transaction.on_commit(partial(
                _send, "notifyhub.deliver_batch", [ids[start:start + size]], deliver_queue(channel), countdown
            ))


def dispatch_enqueue(*, message_id, first_id: int | None = None, last_id: int | None = None) -> None:
    args = [str(message_id)] if first_id is None else [str(message_id), first_id, last_id]
    name = "notifyhub.dispatch_message" if first_id is None else "notifyhub.dispatch_chunk"
    transaction.on_commit(partial(_send, name, args, DISPATCH_QUEUE))
