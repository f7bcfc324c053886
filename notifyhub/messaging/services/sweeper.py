"""Periodic work that keeps the outbox honest: release what is due, rescue what was lost.

The broker is not a database. Every piece of planned work has a row — a ``DispatchChunk`` per
slice of an audience, a ``Delivery`` per send — and this module finds rows whose work stopped:

- ``sending`` rows whose claim heartbeat is older than ``NOTIFYHUB_STUCK_SECONDS`` (a killed
  worker) are re-queued, or failed with ``worker_lost`` once out of attempts (which falls back
  like any other failure);
- ``queued`` rows whose broker message is gone (checked against the broker, so a long backlog is
  left alone) are enqueued again;
- ``pending`` chunks not finished after ``NOTIFYHUB_QUEUED_CHECK_SECONDS``, and accepted
  messages never started, are enqueued again;
- follow-ups (fallback, suppression) and early provider reports left behind are redone.

The conditional claim makes every repeat harmless.
"""
import logging
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifyhub.messaging.broker import broker_task_ids
from notifyhub.messaging.models import ChunkStatus, Delivery, DeliveryStatus, DispatchChunk, Message, MessageStatus
from notifyhub.messaging.queueing import (
    DISPATCH_QUEUE,
    chunk_enqueue,
    deliver_queue,
    deliveries_requeue,
    dispatch_enqueue,
)
from notifyhub.messaging.services.events import events_record
from notifyhub.messaging.services.fallback import fallback_next
from notifyhub.messaging.services.followups import followups_redo
from notifyhub.messaging.services.outcomes import followup_for
from notifyhub.messaging.services.receipts import early_receipts_sweep
from notifyhub.messaging.services.rollup import messages_rollup

logger = logging.getLogger(__name__)
RELEASE_LIMIT = 5000
#: Waits that are not attempts: releasing them again writes no event (see ``retries.Deferral``).
DEFERRAL_REASONS = frozenset({"rate_limited", "circuit_open", "frequency_capped"})


def due_release() -> dict:
    """Start scheduled messages whose time has come and re-queue deliveries that are due."""
    now = timezone.now()
    with transaction.atomic():
        message_ids = list(Message.objects.filter(status=MessageStatus.SCHEDULED, send_at__lte=now)
                           .values_list("pk", flat=True)[:500])
        started = Message.objects.filter(pk__in=message_ids, status=MessageStatus.SCHEDULED).update(
            status=MessageStatus.ACCEPTED, updated_at=now)
        for message_id in message_ids:
            dispatch_enqueue(message_id=message_id)
        due = list(
            Delivery.objects.select_for_update(of=("self",), skip_locked=True)
            .filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            .order_by("next_attempt_at").values_list("pk", "channel", "lane", "reason")[:RELEASE_LIMIT]
        )
        released = deliveries_requeue(deliveries=((channel, lane, pk) for pk, channel, lane, _ in due),
                                      expect={"status": DeliveryStatus.PENDING})
        events_record(changes=((pk, DeliveryStatus.QUEUED, "due: released for the next attempt")
                               for pk, _, _, reason in due if reason not in DEFERRAL_REASONS))
    return {"messages": started, "deliveries": released, "fallbacks": fallback_timeouts_release(now=now)}


def fallback_timeouts_release(*, now) -> int:
    """Fall back for sent deliveries whose provider has not reported delivery in time."""
    with transaction.atomic():
        ids = list(Delivery.objects.select_for_update(of=("self",), skip_locked=True)
                   .filter(status=DeliveryStatus.SENT, fallback_at__lte=now)
                   .values_list("pk", flat=True)[:RELEASE_LIMIT])
        if not ids:
            return 0
        Delivery.objects.filter(pk__in=ids).update(fallback_at=None)
        late = list(Delivery.objects.filter(pk__in=ids).select_related("message__template__category", "recipient"))
        return len(fallback_next(deliveries=late, why="not delivered within the fallback timeout"))


def stuck_sweep() -> dict:
    """Rescue work whose worker or broker message was lost; redo bookkeeping left behind."""
    result: dict = {}
    steps = (("sending", _sending_rescue), ("queued", _queued_rescue), ("dispatch", _dispatch_rescue),
             ("followups", lambda: {"followups": followups_redo()}),
             ("early_reports", lambda: {"early_reports": early_receipts_sweep(
                 max_age_hours=settings.NOTIFYHUB_EARLY_RECEIPT_HOURS)}),
             ("rollups", lambda: {"rollups": _stale_rollups()}))
    for name, step in steps:  # one failing step never holds up the others
        try:
            result.update(step())
        except Exception:
            logger.exception("Sweeper step %s failed", name)
            result[f"{name}_error"] = True
    return result


def _stale_rollups() -> int:
    """``processing`` messages untouched for a while: recompute (a roll-up lost with its worker)."""
    cutoff = timezone.now() - timedelta(seconds=settings.NOTIFYHUB_QUEUED_CHECK_SECONDS)
    stale = list(Message.objects.filter(status=MessageStatus.PROCESSING, updated_at__lt=cutoff)
                 .order_by("updated_at").values_list("pk", flat=True)[:200])
    if stale:
        messages_rollup(message_ids=stale)
        Message.objects.filter(pk__in=stale, status=MessageStatus.PROCESSING).update(updated_at=timezone.now())
    return len(stale)


def _sending_rescue() -> dict:
    """Claims whose heartbeat stopped: their worker died mid-batch."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.NOTIFYHUB_STUCK_SECONDS)
    with transaction.atomic():
        lost = list(Delivery.objects.select_for_update(of=("self",), skip_locked=True)
                    .filter(status=DeliveryStatus.SENDING, claimed_at__lt=cutoff)
                    .select_related("message__template")[:RELEASE_LIMIT])
        exhausted = [d for d in lost if d.attempts >= settings.NOTIFYHUB_MAX_ATTEMPTS]
        retry = [d for d in lost if d.attempts < settings.NOTIFYHUB_MAX_ATTEMPTS]
        for delivery in exhausted:  # each may owe a fallback: the marker is written with the failure
            Delivery.objects.filter(pk=delivery.pk, status=DeliveryStatus.SENDING).update(
                status=DeliveryStatus.FAILED, reason="worker_lost", claim_token=None, updated_at=now,
                followup=followup_for(delivery))
        requeued = deliveries_requeue(deliveries=((d.channel, d.lane, d.pk) for d in retry),
                                      expect={"status": DeliveryStatus.SENDING}, claim_token=None)
        events_record(changes=[
            *((d.pk, DeliveryStatus.FAILED, "worker lost and attempts exhausted") for d in exhausted),
            *((d.pk, DeliveryStatus.QUEUED, "re-queued by the sweeper: the worker sending it was lost")
              for d in retry),
        ])
    if exhausted:
        messages_rollup(message_ids={d.message_id for d in exhausted})
    return {"requeued_sending": requeued, "failed": len(exhausted)}


def _queued_rescue() -> dict:
    """Queued rows whose broker message is gone (not merely waiting behind a backlog)."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.NOTIFYHUB_QUEUED_CHECK_SECONDS)
    candidates = list(Delivery.objects.filter(status=DeliveryStatus.QUEUED, updated_at__lt=cutoff)
                      .order_by("updated_at").values_list("pk", "channel", "lane", "enqueue_id")[:RELEASE_LIMIT])
    if not candidates:
        return {"requeued_queued": 0}
    queues = {deliver_queue(channel, lane) for _, channel, lane, _ in candidates}
    present = broker_task_ids(queues=queues)
    if present is not None:
        time.sleep(0.2)  # a message moving from its queue to a worker is briefly in neither place
        again = broker_task_ids(queues=queues)
        present = present | (again or set())
        lost = [c for c in candidates if c[3] is None or str(c[3]) not in present]
    else:  # an uninspectable broker: only what is very old
        very_old = now - timedelta(seconds=10 * settings.NOTIFYHUB_QUEUED_CHECK_SECONDS)
        old = set(Delivery.objects.filter(pk__in=[c[0] for c in candidates], updated_at__lt=very_old)
                  .values_list("pk", flat=True))
        lost = [c for c in candidates if c[0] in old]
    by_task: dict = {}
    for pk, channel, lane, enqueue_id in lost:
        by_task.setdefault(enqueue_id, []).append((channel, lane, pk))
    requeued = 0
    with transaction.atomic():
        for enqueue_id, rows in by_task.items():  # only rows nobody re-enqueued meanwhile
            task = {"enqueue_id": enqueue_id} if enqueue_id else {"enqueue_id__isnull": True}
            requeued += deliveries_requeue(deliveries=rows, expect={"status": DeliveryStatus.QUEUED, **task})
    if requeued:
        logger.warning("Re-enqueued %d queued deliveries whose broker message was lost", requeued)
    return {"requeued_queued": requeued}


def _dispatch_rescue() -> dict:
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.NOTIFYHUB_QUEUED_CHECK_SECONDS)
    with transaction.atomic():
        stalled = list(Message.objects.filter(status=MessageStatus.ACCEPTED, updated_at__lt=cutoff)
                       .values_list("pk", flat=True)[:500])
        Message.objects.filter(pk__in=stalled).update(updated_at=now)
        for message_id in stalled:
            dispatch_enqueue(message_id=message_id)
    candidates = list(DispatchChunk.objects.filter(status=ChunkStatus.PENDING, updated_at__lt=cutoff)
                      .values_list("pk", "enqueue_id")[:500])
    present = broker_task_ids(queues=[DISPATCH_QUEUE]) if candidates else set()
    if present is not None and candidates:
        time.sleep(0.2)
        present |= broker_task_ids(queues=[DISPATCH_QUEUE]) or set()
    chunks = [(pk, task) for pk, task in candidates if present is None or task is None or str(task) not in present]
    with transaction.atomic():
        restarted = 0
        for chunk_id, task in chunks:  # only chunks nobody re-enqueued meanwhile
            restarted += chunk_enqueue(chunk_id=chunk_id, previous=task)
    return {"dispatch_restarted": len(stalled), "chunks_restarted": restarted}
