"""Dispatch: turn a message's audience into deliveries, one recorded chunk at a time.

``message_dispatch_start`` writes one :class:`DispatchChunk` row per slice of the audience in the
same transaction that marks the message ``processing``, then enqueues a task per chunk. The rows
are the record of planned work: a chunk task that is lost stays ``pending`` and the sweeper
enqueues it again; one that raises is retried with backoff and, after
``NOTIFYHUB_CHUNK_MAX_ATTEMPTS``, its recipients get ``failed/dispatch_error`` deliveries, so a
message never stays ``processing`` with recipients that have no delivery. A chunk holds its
message ``FOR SHARE`` while it writes, so a cancel waits for it and no delivery is added behind
the cancel.
"""
import logging
from collections.abc import Sequence

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from notifyhub.messaging.models import (
    ChunkStatus,
    Delivery,
    DeliveryStatus,
    DispatchChunk,
    Message,
    MessageRecipient,
    MessageStatus,
)
from notifyhub.messaging.queueing import chunk_enqueue
from notifyhub.messaging.services.events import events_record
from notifyhub.messaging.services.planning import INFRASTRUCTURE_ERRORS, deliveries_create, deliveries_plan
from notifyhub.messaging.services.rollup import messages_rollup
from notifyhub.messaging.services.rules import reservations_guard
from preferences.models import Recipient

logger = logging.getLogger(__name__)


class ChunkRetry(Exception):
    """The chunk failed and will be retried after ``countdown`` seconds."""

    def __init__(self, countdown: float, error: str):
        super().__init__(error)
        self.countdown = countdown


def message_dispatch_inline(*, message: Message, recipients: Sequence[Recipient]) -> list[Delivery]:
    """Dispatch a small message inside the accepting transaction, so the answer lists deliveries."""
    rows = deliveries_create(message=message, plans=deliveries_plan(message=message, recipients=recipients))
    messages_rollup(message_ids=[message.pk])
    return rows


def message_dispatch_start(*, message_id) -> int:
    """Record the chunks of an accepted message's audience and enqueue one task per chunk."""
    size = settings.NOTIFYHUB_DISPATCH_CHUNK_SIZE
    with transaction.atomic():
        message = Message.objects.select_for_update().filter(pk=message_id, status=MessageStatus.ACCEPTED).first()
        if message is None:
            return 0
        now = timezone.now()
        chunks = DispatchChunk.objects.bulk_create(
            [DispatchChunk(message=message, first_id=first, last_id=last, updated_at=now)
             for first, last in _chunk_bounds(message, size)])
        message.status = MessageStatus.PROCESSING if chunks else MessageStatus.SKIPPED
        message.save(update_fields=["status", "updated_at"])
        for chunk in chunks:
            chunk_enqueue(chunk_id=chunk.pk)
    return len(chunks)


def _chunk_bounds(message: Message, size: int) -> list[tuple[int, int]]:
    """``(first, last)`` audience row ids of each slice of ``size``: one row per chunk is read."""
    if connection.vendor != "postgresql":
        ids = list(MessageRecipient.objects.filter(message=message).order_by("id").values_list("id", flat=True))
        return [(ids[i], ids[min(i + size, len(ids)) - 1]) for i in range(0, len(ids), size)]
    table = MessageRecipient._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT min(id), max(id) FROM (SELECT id, (row_number() OVER (ORDER BY id) - 1) / %s AS slice "  # noqa: S608
            f"FROM {table} WHERE message_id = %s) AS numbered GROUP BY slice ORDER BY slice", [size, message.pk])
        return [(first, last) for first, last in cursor.fetchall()]


def message_dispatch_chunk(*, chunk_id: int) -> int:
    """Plan and create the deliveries of one chunk; a repeated run creates nothing.

    Raises :class:`ChunkRetry` when the chunk failed and should be tried again.
    """
    rows: list = []
    try:
        with reservations_guard(), transaction.atomic():
            chunk = (DispatchChunk.objects.select_for_update(of=("self",), skip_locked=True)
                     .filter(pk=chunk_id, status=ChunkStatus.PENDING).first())
            if chunk is not None:
                message = Message.objects.select_related("template__category").get(pk=chunk.message_id)
                if _status_for_share(message) != MessageStatus.CANCELLED:
                    rows = _chunk_plan(message, chunk)
                _chunk_finish(chunk, ChunkStatus.DONE)
    except Exception as exc:
        return _chunk_failed(chunk_id, exc)
    # Also when the chunk was already done: a repeat after a worker died between the chunk's
    # commit and its roll-up is what finishes the message.
    message_id = DispatchChunk.objects.filter(pk=chunk_id).values_list("message_id", flat=True).first()
    if message_id:
        messages_rollup(message_ids=[message_id])
    return len(rows)


def _status_for_share(message: Message) -> str:
    """The message's status, read under a share lock a cancel must wait for (PostgreSQL)."""
    if connection.vendor != "postgresql":
        return message.status
    with connection.cursor() as cursor:
        sql = f"SELECT status FROM {Message._meta.db_table} WHERE id = %s FOR SHARE"  # noqa: S608 — a model name
        cursor.execute(sql, [message.pk])
        return cursor.fetchone()[0]


def _chunk_recipients(chunk: DispatchChunk, *, message: Message, channels) -> list[Recipient]:
    """The chunk's recipients that have no delivery on ``channels`` yet (one query, no id lists)."""
    audience = MessageRecipient.objects.filter(message_id=chunk.message_id, id__gte=chunk.first_id,
                                               id__lte=chunk.last_id).values("recipient_id")
    done = Delivery.objects.filter(message_id=message.pk, channel__in=list(channels),
                                   recipient_id__in=audience).values("recipient_id")
    return list(Recipient.objects.filter(pk__in=audience).exclude(pk__in=done))


def _chunk_plan(message: Message, chunk: DispatchChunk) -> list[Delivery]:
    channels = message.channels or message.template.channels
    recipients = _chunk_recipients(chunk, message=message, channels=channels)
    return deliveries_create(message=message, plans=deliveries_plan(message=message, recipients=recipients),
                             fresh=True)


def _chunk_finish(chunk: DispatchChunk, status: str) -> None:
    """Close the chunk. The message row is not written here: chunks of one message run side by
    side, each holding the message ``FOR SHARE``; the roll-up sees the pending chunks instead."""
    DispatchChunk.objects.filter(pk=chunk.pk, status=ChunkStatus.PENDING).update(
        status=status, updated_at=timezone.now())


def _chunk_failed(chunk_id: int, exc: Exception) -> int:
    """Count the failure; retry with backoff, or fail the chunk's recipients when out of attempts."""
    error = f"{exc.__class__.__name__}: {exc}".encode("utf-8", "replace").decode("utf-8")[:2000]
    logger.exception("Dispatch chunk %s failed", chunk_id)
    with transaction.atomic():
        chunk = DispatchChunk.objects.select_for_update().filter(pk=chunk_id, status=ChunkStatus.PENDING).first()
        if chunk is None:
            return 0
        outage = isinstance(exc, INFRASTRUCTURE_ERRORS)  # waits for PostgreSQL or Redis, fails nobody
        chunk.attempts += 0 if outage else 1
        chunk.last_error, chunk.updated_at = error, timezone.now()
        chunk.save(update_fields=["attempts", "last_error", "updated_at"])
        if outage or chunk.attempts < settings.NOTIFYHUB_CHUNK_MAX_ATTEMPTS:
            countdown = min(2 ** max(chunk.attempts, 1) * (2 if outage else 1), 300)
        else:
            created = _chunk_fail_recipients(chunk, error)
            _chunk_finish(chunk, ChunkStatus.FAILED)
            countdown = None
    if countdown is not None:
        raise ChunkRetry(countdown, error) from exc
    messages_rollup(message_ids=[chunk.message_id])
    return created


def _chunk_fail_recipients(chunk: DispatchChunk, error: str) -> int:
    """Give every recipient of a chunk that cannot be planned a ``failed`` delivery saying why."""
    message = Message.objects.select_related("template").get(pk=chunk.message_id)
    channels = message.channels or message.template.channels or ["none"]
    recipients = _chunk_recipients(chunk, message=message, channels=channels)
    now = timezone.now()
    rows = [Delivery(message=message, recipient=r, channel=channel, status=DeliveryStatus.FAILED,
                     reason="dispatch_error", detail=error, created_at=now, updated_at=now,
                     explain=[f"dispatch failed {chunk.attempts} times: {error}"])
            for r in recipients for channel in channels[:1]]
    Delivery.objects.bulk_create(rows, ignore_conflicts=True)
    events_record(changes=((d.id, DeliveryStatus.FAILED, f"dispatch_error: {error}") for d in rows))
    return len(rows)
