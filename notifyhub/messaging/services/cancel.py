"""Cancelling a message: nothing more of it is sent once the cancel has answered.

The message row is locked ``FOR UPDATE``, which waits for dispatch chunks in progress (they hold
it ``FOR SHARE``), so no chunk can add deliveries behind the cancel. Open deliveries become
``cancelled`` in one statement whatever the size of the message. Workers look for the cancel at
claim time, before each send group and, while a group is sent one by one, every half second
(:mod:`.batch`); the cancel waits for claims whose heartbeat is alive — at most
``NOTIFYHUB_CANCEL_DRAIN_SECONDS`` — so nothing is sent after the answer. The dedup windows and
cap units of the cancelled deliveries are given back before the answer, or for a large message
by a background task, page by page.
"""
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from notifyhub.messaging.copying import rows_copy
from notifyhub.messaging.models import Delivery, DeliveryEvent, DeliveryStatus, Message, MessageStatus
from notifyhub.messaging.queueing import MAINTENANCE_QUEUE, task_send_on_commit
from notifyhub.messaging.services.rollup import messages_rollup
from notifyhub.messaging.services.rules import deliveries_reservations_release

OPEN_UNCLAIMED = (DeliveryStatus.PENDING, DeliveryStatus.QUEUED)
FINAL_MESSAGE = (MessageStatus.SENT, MessageStatus.PARTIAL, MessageStatus.FAILED, MessageStatus.SKIPPED)
RELEASE_PAGE = 1000


def message_cancel(*, message: Message) -> int:
    """Cancel every delivery not yet handed to a provider; returns how many were cancelled."""
    now = timezone.now()
    with transaction.atomic():
        locked = Message.objects.select_for_update(of=("self",)).select_related("template__category").get(
            pk=message.pk)
        ids = _cancel_open(locked, now)
        rows_copy(DeliveryEvent, [DeliveryEvent(delivery_id=pk, status=DeliveryStatus.CANCELLED,
                                                detail="cancelled by request", at=now, external_id="") for pk in ids])
        in_flight = Delivery.objects.filter(message=locked, status=DeliveryStatus.SENDING).exists()
        if locked.status not in FINAL_MESSAGE or ids or in_flight:
            Message.objects.filter(pk=locked.pk).update(status=MessageStatus.CANCELLED, completed_at=now,
                                                        updated_at=now)
        else:
            messages_rollup(message_ids=[locked.pk])
        template = locked.template
        if ids and (template.dedup_window_seconds or template.category.frequency_caps):
            if len(ids) <= RELEASE_PAGE:  # a small message: given back before the answer
                transaction.on_commit(lambda: cancelled_reservations_release(message_id=locked.pk))
            else:
                task_send_on_commit("notifyhub.release_cancelled", [str(locked.pk), ""], MAINTENANCE_QUEUE)
    _drain(message)
    message.refresh_from_db()
    return len(ids)


def _cancel_open(message: Message, now) -> list:
    """One UPDATE of every open, unclaimed delivery of ``message``; returns their ids."""
    if connection.vendor != "postgresql":
        ids = list(Delivery.objects.filter(message=message, status__in=OPEN_UNCLAIMED).values_list("pk", flat=True))
        for start in range(0, len(ids), 500):  # SQLite limits the variables of one statement
            Delivery.objects.filter(pk__in=ids[start:start + 500], status__in=OPEN_UNCLAIMED).update(
                status=DeliveryStatus.CANCELLED, reason="cancelled", updated_at=now, next_attempt_at=None)
        return ids
    table = Delivery._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET status = %s, reason = 'cancelled', updated_at = %s, next_attempt_at = NULL "  # noqa: S608
            f"WHERE message_id = %s AND status = ANY(%s) RETURNING id",
            [DeliveryStatus.CANCELLED, now, message.pk, list(OPEN_UNCLAIMED)])
        return [row[0] for row in cursor.fetchall()]


def cancelled_reservations_release(*, message_id, after: str = "") -> str:
    """Give back the reservations of one page of a cancelled message's deliveries; returns the
    last id of the page ("" when done). The task re-enqueues itself until done."""
    page = list(Delivery.objects.filter(message_id=message_id, status=DeliveryStatus.CANCELLED,
                                        **({"pk__gt": after} if after else {}))
                .select_related("message__template__category").order_by("pk")[:RELEASE_PAGE])
    deliveries_reservations_release(page)
    return str(page[-1].pk) if len(page) == RELEASE_PAGE else ""


def _drain(message: Message) -> None:
    """Wait until no live claim of ``message`` is being sent (bounded)."""
    deadline = time.monotonic() + settings.NOTIFYHUB_CANCEL_DRAIN_SECONDS
    while time.monotonic() < deadline:
        alive = timezone.now() - timedelta(seconds=settings.NOTIFYHUB_STUCK_SECONDS)
        if not Delivery.objects.filter(message=message, status=DeliveryStatus.SENDING, claimed_at__gte=alive).exists():
            return
        time.sleep(0.1)
