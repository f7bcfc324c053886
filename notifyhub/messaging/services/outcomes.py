"""Recording what happened to deliveries, and rolling it up to their messages."""
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from channels_app.errors import ChannelError, DeadAddressError, TransientChannelError
from channels_app.message import SendResult
from notifyhub.messaging.models import (
    OPEN_DELIVERY_STATUSES,
    SUCCESS_DELIVERY_STATUSES,
    Delivery,
    DeliveryStatus,
    Message,
    MessageStatus,
)
from notifyhub.messaging.queueing import deliveries_enqueue
from notifyhub.messaging.services.events import events_record
from preferences.services import contact_point_deactivate

OUTCOME_FIELDS = ["status", "reason", "detail", "sent_at", "provider_message_id", "next_attempt_at",
                  "channel_config", "claim_token", "updated_at", "attempts", "explain", "fallback_at"]


def retry_delay(*, attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter: attempt n waits between base·2^(n-1)/2 and base·2^(n-1).

    The ranges of successive attempts do not overlap, so delays always grow; the provider's
    ``Retry-After`` is honoured when it asks for longer; the cap bounds the wait.
    """
    ceiling = settings.NOTIFYHUB_RETRY_BASE_SECONDS * 2 ** (attempt - 1)
    delay = random.uniform(ceiling / 2, ceiling)
    if retry_after:
        delay = max(delay, retry_after)
    return min(delay, settings.NOTIFYHUB_RETRY_MAX_SECONDS)


@dataclass(frozen=True, slots=True)
class Deferral:
    """Not sent and not an attempt: wait for a rate-limit slot or a closed circuit breaker."""

    until: datetime
    reason: str
    detail: str


def outcomes_record(*, deliveries: Sequence[Delivery], outcomes: dict, config_id: int | None,
                    reports_delivery: bool = False) -> None:
    """Apply ``{delivery_id: SendResult | ChannelError | Deferral}`` to claimed deliveries, in bulk.

    ``reports_delivery``: the account's provider reports delivery later, so a fallback-chain
    timeout starts at the send.
    """
    now = timezone.now()
    changes, retry_soon, failed = [], [], []
    for delivery in deliveries:
        outcome = outcomes[delivery.id]
        delivery.claim_token = None
        delivery.updated_at = now
        if isinstance(outcome, Deferral):
            delivery.status, delivery.reason, delivery.next_attempt_at = DeliveryStatus.PENDING, outcome.reason, \
                outcome.until
            delivery.attempts = max(0, delivery.attempts - 1)  # waiting is not an attempt
            changes.append((delivery.id, DeliveryStatus.PENDING, outcome.detail))
            delay = (outcome.until - now).total_seconds()
            if delay <= settings.NOTIFYHUB_RETRY_COUNTDOWN_MAX_SECONDS:
                retry_soon.append((delivery, max(0.0, delay)))
            continue
        delivery.channel_config_id = config_id
        if isinstance(outcome, SendResult):
            delivery.status, delivery.reason, delivery.detail = DeliveryStatus.SENT, "", outcome.detail
            delivery.sent_at, delivery.provider_message_id = now, outcome.provider_message_id
            delivery.next_attempt_at = None
            timeout = delivery.message.template.fallback_timeout_seconds
            if reports_delivery and timeout and delivery.message.template.routing == "fallback":
                delivery.fallback_at = now + timedelta(seconds=timeout)
            changes.append((delivery.id, DeliveryStatus.SENT, f"attempt {delivery.attempts}: sent "
                            f"{outcome.provider_message_id} {outcome.detail}".strip()))
            continue
        _record_error(delivery, outcome, now, changes, retry_soon)
        if delivery.status == DeliveryStatus.FAILED:
            failed.append(delivery)
    Delivery.objects.bulk_update(deliveries, OUTCOME_FIELDS)
    events_record(changes=changes)
    if failed:
        from notifyhub.messaging.services.dispatch import fallback_next

        fallback_next(deliveries=failed, why="failed")
    dead = [d for d in deliveries if isinstance(outcomes[d.id], DeadAddressError) and d.address]
    for delivery in dead:
        contact_point_deactivate(recipient_id=delivery.recipient_id, kind=delivery.channel,
                                 address=delivery.address, reason=f"dead: {delivery.reason}")
    if retry_soon:
        # Short waits ride a Celery countdown; long ones wait for the due-time dispatcher.
        for delivery, delay in retry_soon:
            deliveries_enqueue(deliveries=[(delivery.channel, delivery.lane, delivery.id)], countdown=delay)


def _record_error(delivery, error: ChannelError, now, changes, retry_soon) -> None:
    delivery.detail = getattr(error, "detail", str(error))
    transient = isinstance(error, TransientChannelError)
    if transient and delivery.attempts < settings.NOTIFYHUB_MAX_ATTEMPTS:
        delay = retry_delay(attempt=delivery.attempts, retry_after=error.retry_after)
        delivery.status, delivery.reason = DeliveryStatus.PENDING, "retrying"
        delivery.next_attempt_at = now + timedelta(seconds=delay)
        changes.append((delivery.id, DeliveryStatus.PENDING,
                        f"attempt {delivery.attempts} failed, retry in {delay:.1f}s: {delivery.detail}"))
        if delay <= settings.NOTIFYHUB_RETRY_COUNTDOWN_MAX_SECONDS:
            retry_soon.append((delivery, delay))  # longer waits are left to the due-time dispatcher
        return
    delivery.status = DeliveryStatus.FAILED
    delivery.reason = "max_attempts" if transient else (error.code or "permanent_error")
    delivery.next_attempt_at = None
    changes.append((delivery.id, DeliveryStatus.FAILED, f"attempt {delivery.attempts}: {delivery.reason}: "
                    f"{delivery.detail}"))


def message_status_from(counts: Counter) -> str:
    """A message's status from the count of its deliveries per status."""
    if any(counts[s] for s in OPEN_DELIVERY_STATUSES):
        return MessageStatus.PROCESSING
    sent = sum(counts[s] for s in SUCCESS_DELIVERY_STATUSES)
    failed = counts[DeliveryStatus.FAILED] + counts[DeliveryStatus.BOUNCED]
    if sent:
        return MessageStatus.PARTIAL if failed else MessageStatus.SENT
    if failed:
        return MessageStatus.FAILED
    if counts[DeliveryStatus.CANCELLED] and not counts[DeliveryStatus.SKIPPED]:
        return MessageStatus.CANCELLED
    return MessageStatus.SKIPPED


def messages_rollup(*, message_ids: Iterable) -> None:
    """Recompute the status of these messages from their deliveries.

    A message with open deliveries is simply ``processing``: that is found through a small
    partial index, so a batch of a 100,000-delivery broadcast does not count the whole
    broadcast. Only messages with nothing open get their deliveries counted.
    """
    message_ids = set(message_ids)
    if not message_ids:
        return
    from django.db.models import Count

    still_open = set(
        Delivery.objects.filter(message_id__in=message_ids, status__in=OPEN_DELIVERY_STATUSES)
        .values_list("message_id", flat=True).distinct()
    )
    counts: dict = defaultdict(Counter)
    finished = message_ids - still_open
    if finished:
        rows = Delivery.objects.filter(message_id__in=finished).values_list("message_id", "status")
        for message_id, status, n in rows.annotate(n=Count("id")).order_by():
            counts[message_id][status] = n
    now = timezone.now()
    changed = []
    for message in Message.objects.filter(pk__in=message_ids).exclude(
        status__in=[MessageStatus.SCHEDULED, MessageStatus.CANCELLED, MessageStatus.ACCEPTED]
    ).only("id", "status", "chunks_pending", "completed_at"):
        if message.pk in still_open or message.chunks_pending:
            status = MessageStatus.PROCESSING
        else:
            status = message_status_from(counts[message.pk])
        if status != message.status:
            message.status = status
            message.completed_at = None if status == MessageStatus.PROCESSING else now
            message.updated_at = now
            changed.append(message)
    Message.objects.bulk_update(changed, ["status", "completed_at", "updated_at"])
