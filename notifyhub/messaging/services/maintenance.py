"""Periodic work that keeps the outbox honest: release what is due, rescue what is stuck.

The broker is not a database. A lost broker message, a killed worker or a flushed Redis leaves
a ``Delivery`` row ``queued`` or ``sending``; the sweeper finds it and enqueues it again, and
the conditional claim keeps the repeat harmless.
"""
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifyhub.messaging.models import Delivery, DeliveryStatus, Message, MessageStatus
from notifyhub.messaging.queueing import deliveries_enqueue, dispatch_enqueue
from notifyhub.messaging.services.events import events_record
from notifyhub.messaging.services.outcomes import messages_rollup

RELEASE_LIMIT = 5000


@transaction.atomic
def due_release() -> dict:
    """Start scheduled messages whose time has come and re-queue deliveries due for retry."""
    now = timezone.now()
    message_ids = list(
        Message.objects.filter(status=MessageStatus.SCHEDULED, send_at__lte=now).values_list("pk", flat=True)[:500]
    )
    started = Message.objects.filter(pk__in=message_ids, status=MessageStatus.SCHEDULED).update(
        status=MessageStatus.ACCEPTED, updated_at=now)
    for message_id in message_ids:
        dispatch_enqueue(message_id=message_id)
    due = list(
        Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
        .order_by("next_attempt_at").values_list("pk", "channel", "lane")[:RELEASE_LIMIT]
    )
    due_ids = list(
        Delivery.objects.select_for_update(skip_locked=True)
        .filter(pk__in=[pk for pk, _, _ in due], status=DeliveryStatus.PENDING).values_list("pk", flat=True)
    )
    released = Delivery.objects.filter(pk__in=due_ids).update(status=DeliveryStatus.QUEUED, updated_at=now)
    events_record(changes=((pk, DeliveryStatus.QUEUED, "due: released for the next attempt") for pk in due_ids))
    queues = {pk: (channel, lane) for pk, channel, lane in due}
    deliveries_enqueue(deliveries=((*queues[pk], pk) for pk in due_ids))
    return {"messages": started, "deliveries": released, "fallbacks": fallback_timeouts_release(now=now)}


def fallback_timeouts_release(*, now) -> int:
    """Fall back for sent deliveries whose provider has not reported delivery in time."""
    from notifyhub.messaging.services.dispatch import fallback_next

    late = list(
        Delivery.objects.select_for_update(skip_locked=True)
        .filter(status=DeliveryStatus.SENT, fallback_at__lte=now)
        .select_related("message__template__category", "recipient")[:RELEASE_LIMIT]
    )
    if not late:
        return 0
    Delivery.objects.filter(pk__in=[d.pk for d in late]).update(fallback_at=None)
    return len(fallback_next(deliveries=late, why="not delivered within the fallback timeout"))


@transaction.atomic
def stuck_sweep() -> dict:
    """Re-enqueue deliveries left ``queued``/``sending`` too long, and stalled dispatches."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.NOTIFYHUB_STUCK_SECONDS)
    lost_sending = list(
        Delivery.objects.filter(status=DeliveryStatus.SENDING, claimed_at__lt=cutoff)
        .values_list("pk", "channel", "lane", "attempts")[:RELEASE_LIMIT]
    )
    exhausted = [pk for pk, _, _, attempts in lost_sending if attempts >= settings.NOTIFYHUB_MAX_ATTEMPTS]
    retry = [(channel, lane, pk) for pk, channel, lane, attempts in lost_sending
             if attempts < settings.NOTIFYHUB_MAX_ATTEMPTS]
    Delivery.objects.filter(pk__in=exhausted, status=DeliveryStatus.SENDING).update(
        status=DeliveryStatus.FAILED, reason="worker_lost", claim_token=None, updated_at=now)
    Delivery.objects.filter(pk__in=[pk for _, _, pk in retry], status=DeliveryStatus.SENDING).update(
        status=DeliveryStatus.QUEUED, claim_token=None, updated_at=now)
    lost_queued = list(
        Delivery.objects.filter(status=DeliveryStatus.QUEUED, updated_at__lt=cutoff)
        .values_list("channel", "lane", "pk")[:RELEASE_LIMIT]
    )
    Delivery.objects.filter(pk__in=[pk for _, _, pk in lost_queued]).update(updated_at=now)
    events_record(changes=[
        *((pk, DeliveryStatus.FAILED, "worker lost and attempts exhausted") for pk in exhausted),
        *((pk, DeliveryStatus.QUEUED, "re-queued by the sweeper: the worker sending it was lost")
          for _, _, pk in retry),
    ])
    deliveries_enqueue(deliveries=[*retry, *lost_queued])
    stalled = list(
        Message.objects.filter(status=MessageStatus.ACCEPTED, updated_at__lt=cutoff).values_list("pk", flat=True)
    )
    Message.objects.filter(pk__in=stalled).update(updated_at=now)
    for message_id in stalled:
        dispatch_enqueue(message_id=message_id)
    if exhausted:
        messages_rollup(message_ids=Delivery.objects.filter(pk__in=exhausted).values_list("message_id", flat=True))
    return {"requeued_sending": len(retry), "requeued_queued": len(lost_queued), "failed": len(exhausted),
            "dispatch_restarted": len(stalled)}


@transaction.atomic
def message_cancel(*, message: Message) -> int:
    """Cancel every delivery not yet handed to a provider; returns how many were cancelled."""
    now = timezone.now()
    open_ids = list(
        Delivery.objects.select_for_update()
        .filter(message=message, status__in=[DeliveryStatus.PENDING, DeliveryStatus.QUEUED])
        .values_list("pk", flat=True)
    )
    cancelled = Delivery.objects.filter(
        pk__in=open_ids, status__in=[DeliveryStatus.PENDING, DeliveryStatus.QUEUED]
    ).update(status=DeliveryStatus.CANCELLED, reason="cancelled", updated_at=now)
    events_record(changes=((pk, DeliveryStatus.CANCELLED, "cancelled by request") for pk in open_ids))
    if message.status in (MessageStatus.SCHEDULED, MessageStatus.ACCEPTED) or message.chunks_pending:
        # Chunks not yet dispatched see the cancelled message and create nothing.
        Message.objects.filter(pk=message.pk).update(status=MessageStatus.CANCELLED, completed_at=now, updated_at=now)
    else:
        messages_rollup(message_ids=[message.pk])
    message.refresh_from_db()
    return cancelled
