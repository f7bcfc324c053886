"""Cancelling a message: nothing more of it is sent once the cancel has answered.

The message row is locked ``FOR UPDATE``, which waits for dispatch chunks in progress (they hold
it ``FOR SHARE``), so no chunk can add deliveries behind the cancel. Open deliveries become
``cancelled`` and give back their dedup windows and cap units. Deliveries already claimed by a
worker are checked again before each send group (:func:`.claim.cancelled_among`), and the cancel
waits — at most ``NOTIFYHUB_CANCEL_DRAIN_SECONDS`` — for the groups already handed to a
provider to finish, so nothing is sent after the answer.
"""
import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifyhub.messaging.models import Delivery, DeliveryStatus, Message, MessageStatus
from notifyhub.messaging.services.events import events_record
from notifyhub.messaging.services.rollup import messages_rollup
from notifyhub.messaging.services.rules import deliveries_reservations_release

OPEN_UNCLAIMED = (DeliveryStatus.PENDING, DeliveryStatus.QUEUED)
FINAL_MESSAGE = (MessageStatus.SENT, MessageStatus.PARTIAL, MessageStatus.FAILED, MessageStatus.SKIPPED)


def message_cancel(*, message: Message) -> int:
    """Cancel every delivery not yet handed to a provider; returns how many were cancelled."""
    now = timezone.now()
    with transaction.atomic():
        locked = Message.objects.select_for_update().get(pk=message.pk)
        rows = list(Delivery.objects.select_for_update(of=("self",))
                    .filter(message=locked, status__in=OPEN_UNCLAIMED)
                    .select_related("message__template__category"))
        Delivery.objects.filter(pk__in=[d.pk for d in rows]).update(
            status=DeliveryStatus.CANCELLED, reason="cancelled", updated_at=now, next_attempt_at=None)
        events_record(changes=((d.pk, DeliveryStatus.CANCELLED, "cancelled by request") for d in rows))
        in_flight = Delivery.objects.filter(message=locked, status=DeliveryStatus.SENDING).exists()
        if locked.status not in FINAL_MESSAGE or rows or in_flight:
            Message.objects.filter(pk=locked.pk).update(status=MessageStatus.CANCELLED, completed_at=now,
                                                        updated_at=now)
        else:
            messages_rollup(message_ids=[locked.pk])
    transaction.on_commit(lambda: deliveries_reservations_release(rows))
    _drain(message)
    message.refresh_from_db()
    return len(rows)


def _drain(message: Message) -> None:
    """Wait until no delivery of ``message`` is being sent (bounded)."""
    deadline = time.monotonic() + settings.NOTIFYHUB_CANCEL_DRAIN_SECONDS
    while time.monotonic() < deadline:
        if not Delivery.objects.filter(message=message, status=DeliveryStatus.SENDING).exists():
            return
        time.sleep(0.1)
