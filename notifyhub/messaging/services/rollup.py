"""Rolling delivery states up to their messages' status, at a cost per message, not per delivery.

Called after every deliver batch, dispatch chunk and provider report, so it must not read a
broadcast's deliveries: a message with anything open is ``processing``, found by one EXISTS
probe per message on the partial index of open deliveries; only a message with nothing open has
its deliveries counted, once, in one aggregate row per message.
"""
from collections.abc import Iterable

from django.db.models import Count, Exists, OuterRef, Q
from django.utils import timezone

from notifyhub.messaging.models import (
    OPEN_DELIVERY_STATUSES,
    SUCCESS_DELIVERY_STATUSES,
    ChunkStatus,
    Delivery,
    DeliveryStatus,
    DispatchChunk,
    Message,
    MessageStatus,
)

#: Statuses a roll-up never changes: the message is not (yet, or any more) driven by deliveries.
FROZEN = (MessageStatus.SCHEDULED, MessageStatus.CANCELLED, MessageStatus.ACCEPTED)
_TALLY = {
    "sent": Q(status__in=SUCCESS_DELIVERY_STATUSES),
    "failed": Q(status__in=(DeliveryStatus.FAILED, DeliveryStatus.BOUNCED)),
    "cancelled": Q(status=DeliveryStatus.CANCELLED),
    "skipped": Q(status=DeliveryStatus.SKIPPED),
}


def message_status_from(*, sent: int, failed: int, cancelled: int, skipped: int) -> str:
    """A finished message's status from the number of its deliveries in each outcome."""
    if sent:
        return MessageStatus.PARTIAL if failed else MessageStatus.SENT
    if failed:
        return MessageStatus.FAILED
    if cancelled and not skipped:
        return MessageStatus.CANCELLED
    return MessageStatus.SKIPPED


def messages_rollup(*, message_ids: Iterable) -> int:
    """Recompute the status of these messages; returns how many changed.

    Three statements whatever the size of the messages: one row per message with EXISTS
    probes for open deliveries and pending dispatch chunks, one aggregate row per finished
    message, one UPDATE per status.
    """
    message_ids = set(message_ids)
    if not message_ids:
        return 0
    open_deliveries = Delivery.objects.filter(message_id=OuterRef("pk"), status__in=OPEN_DELIVERY_STATUSES)
    open_chunks = DispatchChunk.objects.filter(message_id=OuterRef("pk"), status=ChunkStatus.PENDING)
    messages = list(
        Message.objects.filter(pk__in=message_ids).exclude(status__in=FROZEN)
        .annotate(has_open=Exists(open_deliveries), has_chunks=Exists(open_chunks)).order_by()
        .values_list("pk", "status", "has_chunks", "has_open")
    )
    finished = [pk for pk, _, chunks, has_open in messages if not has_open and not chunks]
    tallies = {}
    if finished:
        rows = (Delivery.objects.filter(message_id__in=finished).order_by().values("message_id")
                .annotate(**{name: Count("id", filter=q) for name, q in _TALLY.items()}))
        tallies = {row.pop("message_id"): row for row in rows}
    by_status: dict[str, list] = {}
    for pk, status, chunks, has_open in messages:
        if has_open or chunks:
            new = MessageStatus.PROCESSING
        else:
            new = message_status_from(**tallies.get(pk, dict.fromkeys(_TALLY, 0)))
        if new != status:
            by_status.setdefault(new, []).append(pk)
    now = timezone.now()
    changed = 0
    for status, pks in by_status.items():
        changed += Message.objects.filter(pk__in=pks).exclude(status__in=FROZEN).update(
            status=status, updated_at=now, completed_at=None if status == MessageStatus.PROCESSING else now)
    return changed
