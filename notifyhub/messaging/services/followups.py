"""Bookkeeping after an outcome is recorded: fallback, suppression, early reports, retries, roll-up.

None of this may cause a second send. Each step is redone from the database if it fails: a
failed delivery that owes a fallback or a suppression keeps its ``followup`` marker until the
step commits, and the sweeper (:func:`followups_redo`) finds markers left behind. Early provider
reports wait in their own table (:mod:`.receipts`) and roll-ups are recomputed from scratch.
"""
import logging
from collections.abc import Sequence
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from notifyhub.messaging.models import Delivery, DeliveryStatus
from notifyhub.messaging.queueing import deliveries_batch, deliveries_enqueue
from notifyhub.messaging.services.fallback import fallback_next
from notifyhub.messaging.services.outcomes import Recorded, outcomes_record
from notifyhub.messaging.services.receipts import early_receipts_apply
from notifyhub.messaging.services.rollup import messages_rollup
from notifyhub.messaging.services.rules import deliveries_reservations_release
from preferences.services import contact_point_deactivate

logger = logging.getLogger(__name__)
REDO_LIMIT = 500
#: A marker younger than this belongs to a batch still doing its own follow-ups.
REDO_AFTER = timedelta(seconds=30)


def followups_run(*, recorded: Recorded, rollup: bool = True) -> None:
    """Everything an outcome implies beyond itself; failures are logged and left for the sweeper."""
    _guarded("retry enqueue", _retries_enqueue, recorded.retry_soon)
    owing = [d for d in recorded.written if d.followup]
    if owing:
        _guarded("follow-ups", deliveries_followups, owing)
    cancelled = [d for d in recorded.written if d.status == DeliveryStatus.CANCELLED]
    if cancelled:  # cancelled after the claim: their dedup windows and cap units go back
        _guarded("reservations", deliveries_reservations_release, cancelled)
    sent = [d for d in recorded.written if d.status == DeliveryStatus.SENT and d.provider_message_id]
    if sent:
        _guarded("early reports", early_receipts_apply, sent)
    if rollup and recorded.written:
        _guarded("roll-up", lambda ids: messages_rollup(message_ids=ids), {d.message_id for d in recorded.written})


def _guarded(what: str, step, arg) -> None:
    if not arg:
        return
    try:
        step(arg)
    except Exception:
        logger.exception("Follow-up step %r failed; the sweeper redoes it", what)


def _retries_enqueue(retry_soon: Sequence[tuple[Delivery, float]]) -> None:
    """Short retry waits ride a Celery countdown; the row is ``pending`` and due-time dispatch is
    the safety net if the countdown message is lost."""
    for delivery, delay in retry_soon:  # each has its own due time, so each goes back on its own
        deliveries_enqueue(batches=deliveries_batch(deliveries=[(delivery.channel, delivery.lane, delivery.pk)]),
                           countdown=delay)


def deliveries_followups(deliveries: Sequence[Delivery]) -> None:
    """Fallback and suppression for failed deliveries, then clear their markers, in one transaction.

    ``deliveries`` have ``message__template__category`` and ``recipient`` loaded.
    """
    with transaction.atomic():
        by_why: dict[str, list[Delivery]] = {}
        for delivery in deliveries:
            if "fallback" in delivery.followup:
                by_why.setdefault(_why(delivery), []).append(delivery)
        for why, group in by_why.items():
            fallback_next(deliveries=group, why=why)
        for delivery in deliveries:
            if "suppress" in delivery.followup:
                contact_point_deactivate(recipient_id=delivery.recipient_id, kind=delivery.channel,
                                         address=delivery.address, reason=f"dead: {delivery.reason}")
        Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).update(followup="")
        for delivery in deliveries:
            delivery.followup = ""


def _why(delivery: Delivery) -> str:
    return {"worker_lost": "worker lost", "max_attempts": "failed"}.get(delivery.reason, "failed")


def followups_redo() -> int:
    """Redo the follow-ups of deliveries whose own batch could not finish them (the sweeper).

    One savepoint per message: a message whose follow-ups keep failing is logged and moved to
    the back of the line (``updated_at``), and never holds up the others.
    """
    cutoff = timezone.now() - REDO_AFTER
    done = 0
    with transaction.atomic():
        owing = list(
            Delivery.objects.select_for_update(of=("self",), skip_locked=True)
            .filter(updated_at__lt=cutoff).exclude(followup="")
            .select_related("message__template__category", "recipient").order_by("updated_at")[:REDO_LIMIT]
        )
        by_message: dict = {}
        for delivery in owing:
            by_message.setdefault(delivery.message_id, []).append(delivery)
        for message_id, group in by_message.items():
            try:
                with transaction.atomic():
                    deliveries_followups(group)
                done += len(group)
            except Exception:
                logger.exception("Follow-ups of message %s failed again; retried later", message_id)
                Delivery.objects.filter(pk__in=[d.pk for d in group]).update(updated_at=timezone.now())
    if owing:
        messages_rollup(message_ids={d.message_id for d in owing})
    return done


def outcomes_settle(*, deliveries: Sequence[Delivery], outcomes: dict, config_id, reports_delivery: bool = False,
                    rollup: bool = False) -> Recorded:
    """Record outcomes (their own transaction), then run their follow-ups."""
    recorded = outcomes_record(deliveries=deliveries, outcomes=outcomes, config_id=config_id,
                               reports_delivery=reports_delivery)
    followups_run(recorded=recorded, rollup=rollup)
    return recorded
