"""Track: apply what providers report after a send (delivery reports, bounces, opens).

Reports arrive late, out of order and more than once. Each is applied once — its event id is
stored on the delivery's timeline under a unique constraint — and only ever moves a delivery
forward (``sent → delivered``, never ``delivered → sent``). A hard bounce or a spam complaint
deactivates the address, so the next message to it is ``skipped/suppressed``.

Reports also arrive *early*: a provider may call back before the worker has recorded the send
and its provider id. Such a report is stored (:class:`EarlyReceipt`) before the hook answers
2xx, and applied as soon as the outcome is written (or by the sweeper).
"""
import hashlib
import logging
from collections.abc import Iterable
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from channels_app.base import Receipt
from notifyhub.messaging.models import (
    DELIVERY_PROGRESS,
    Delivery,
    DeliveryEvent,
    DeliveryStatus,
    EarlyReceipt,
    EventKind,
)
from notifyhub.messaging.services.fallback import fallback_next
from notifyhub.messaging.services.rollup import messages_rollup
from preferences.services import contact_point_deactivate

logger = logging.getLogger(__name__)

STATE_REPORTS = {
    "delivered": DeliveryStatus.DELIVERED, "failed": DeliveryStatus.FAILED,
    "bounced": DeliveryStatus.BOUNCED, "complained": DeliveryStatus.COMPLAINED,
}
ENGAGEMENT_REPORTS = {"opened": EventKind.OPENED, "clicked": EventKind.CLICKED}
SUPPRESSING = {DeliveryStatus.BOUNCED, DeliveryStatus.COMPLAINED}
#: A report may only follow a send; a delivery not yet sent (or already skipped) ignores it.
REPORTABLE_FROM = {DeliveryStatus.SENT, DeliveryStatus.DELIVERED,
                   DeliveryStatus.FAILED, DeliveryStatus.BOUNCED}


def receipt_event_id(*, source: str, receipt: Receipt) -> str:
    """The key a report is deduplicated on: the provider's event id, else a digest of it."""
    raw = receipt.event_id or "|".join(
        (receipt.provider_message_id, receipt.status, receipt.at.isoformat() if receipt.at else "", receipt.detail))
    key = f"{source}:{raw}"
    return key if len(key) <= 255 else f"{source}:sha256:{hashlib.sha256(raw.encode()).hexdigest()}"


def receipts_apply(*, source: str, receipts: Iterable[Receipt], channel: str | None = None,
                   config_id: int | None = None) -> dict:
    """Apply provider reports; returns counts of ``applied``, ``duplicate``, ``stored`` (early,
    kept for their delivery) and ``unknown`` (not a report we use)."""
    counts = {"applied": 0, "duplicate": 0, "stored": 0, "unknown": 0}
    touched = set()
    for receipt in receipts:
        result = _apply_one(source=source, receipt=receipt, channel=channel, config_id=config_id)
        counts[result[0]] += 1
        if result[1]:
            touched.add(result[1])
    if touched:
        messages_rollup(message_ids=touched)
    return counts


def _apply_one(*, source, receipt: Receipt, channel, config_id):
    kind = STATE_REPORTS.get(receipt.status) or ENGAGEMENT_REPORTS.get(receipt.status)
    if kind is None or not receipt.provider_message_id:
        logger.info("Ignoring %s report %r for %r", source, receipt.status, receipt.provider_message_id)
        return "unknown", None
    deliveries = Delivery.objects.filter(provider_message_id=receipt.provider_message_id)
    if channel:
        deliveries = deliveries.filter(channel=channel)
    if config_id:
        deliveries = deliveries.filter(channel_config_id=config_id)
    external_id = receipt_event_id(source=source, receipt=receipt)
    with transaction.atomic():
        delivery = deliveries.select_for_update(of=("self",)).select_related(
            "message__template__category", "recipient").first()
        if delivery is None:
            logger.info("%s report for %s before its send was recorded: kept", source, receipt.provider_message_id)
            EarlyReceipt.objects.create(
                source=source, provider_message_id=receipt.provider_message_id, channel=channel or "",
                config_id=config_id, status=receipt.status, event_id=receipt.event_id or "",
                detail=(receipt.detail or "")[:4000], at=receipt.at)
            return "stored", None
        detail = f"{source}: {receipt.status}" + (f": {receipt.detail}" if receipt.detail else "")
        try:
            with transaction.atomic():
                DeliveryEvent.objects.create(delivery=delivery, status=kind, detail=detail[:4000],
                                             external_id=external_id, at=receipt.at or timezone.now())
        except IntegrityError:
            return "duplicate", None
        new = STATE_REPORTS.get(receipt.status)
        if new is None or delivery.status not in REPORTABLE_FROM:
            return "applied", None
        if DELIVERY_PROGRESS[new] <= DELIVERY_PROGRESS[delivery.status]:
            return "applied", None
        delivery.status, delivery.updated_at = new, timezone.now()
        fields = ["status", "updated_at"]
        if new in (DeliveryStatus.FAILED, DeliveryStatus.BOUNCED):
            delivery.reason, delivery.detail = receipt.status, detail[:4000]
            fields += ["reason", "detail"]
        delivery.save(update_fields=fields)
        if new in SUPPRESSING and delivery.address:
            contact_point_deactivate(kind=delivery.channel, address=delivery.address,
                                     reason=f"{receipt.status} ({source})")
        if new in (DeliveryStatus.FAILED, DeliveryStatus.BOUNCED):
            fallback_next(deliveries=[delivery], why=f"{receipt.status} reported by the provider")
            return "applied", delivery.message_id
        # sent → delivered/complained stays a success: the message's status cannot change, and a
        # roll-up per report would count a finished broadcast's deliveries once per report.
        return "applied", None


def early_receipts_apply(deliveries) -> int:
    """Apply the stored early reports of deliveries whose send has just been recorded."""
    ids = {d.provider_message_id for d in deliveries if d.provider_message_id}
    return _early_apply(EarlyReceipt.objects.filter(provider_message_id__in=ids)) if ids else 0


def early_receipts_sweep(*, max_age_hours: float) -> int:
    """Apply stored reports whose delivery has appeared since; forget those too old to match."""
    EarlyReceipt.objects.filter(received_at__lt=timezone.now() - timedelta(hours=max_age_hours)).delete()
    known = Delivery.objects.exclude(provider_message_id="").filter(provider_message_id=OuterRef("provider_message_id"))
    return _early_apply(EarlyReceipt.objects.exclude(provider_message_id="").filter(Exists(known))[:500])


def _early_apply(queryset) -> int:
    stored = list(queryset)
    if not stored:
        return 0
    applied = 0
    for row in stored:
        receipt = Receipt(provider_message_id=row.provider_message_id, status=row.status, event_id=row.event_id,
                          detail=row.detail, at=row.at)
        with transaction.atomic():
            result, message_id = _apply_one(source=row.source, receipt=receipt, channel=row.channel or None,
                                            config_id=row.config_id)
            if result == "stored":  # still no delivery (another account?): keep the first copy only
                transaction.set_rollback(True)
                continue
            EarlyReceipt.objects.filter(pk=row.pk).delete()
        applied += 1
        if message_id:
            messages_rollup(message_ids=[message_id])
    return applied
