"""Recording what happened to a claimed batch: the outcome first, in its own short transaction.

What a provider accepted cannot be taken back, so it is written before anything else, in one
statement guarded by the claim (``WHERE id = ANY(...) AND claim_token = ... AND status =
'sending'``): a worker that stalled past the stuck threshold, and whose deliveries were claimed
again by another, writes nothing over the second claimant. The timeline events of the rows
actually written go in the same transaction. Everything else the outcome implies — the fallback
to the next channel, suppressing a dead address, early provider reports, the roll-up — is
bookkeeping done afterwards (:mod:`.followups`); a delivery that owes some carries a
``followup`` marker, so bookkeeping that fails is redone from the database, never by sending again.
"""
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import OperationalError, close_old_connections, connection, transaction
from django.utils import timezone

from channels_app.errors import ChannelError, DeadAddressError, TransientChannelError
from channels_app.message import SendResult
from notifyhub.messaging.models import Delivery, DeliveryEvent, DeliveryStatus, RoutingMode
from notifyhub.messaging.services.retries import Cancelled, Deferral, deferral_note, retry_delay

logger = logging.getLogger(__name__)
#: A failed outcome write (deadlock, lost connection) is retried this many times in all.
WRITE_ATTEMPTS = 5
FIELDS = ("status", "reason", "detail", "sent_at", "provider_message_id", "next_attempt_at", "channel_config_id",
          "attempts", "explain", "fallback_at", "followup")


@dataclass
class Recorded:
    """What one write recorded: the rows it wrote and what they still owe."""

    written: list[Delivery] = field(default_factory=list)
    retry_soon: list[tuple[Delivery, float]] = field(default_factory=list)

    def extend(self, other: "Recorded") -> None:
        self.written += other.written
        self.retry_soon += other.retry_soon


def outcomes_record(*, deliveries: Sequence[Delivery], outcomes: dict, config_id: int | None,
                    reports_delivery: bool = False) -> Recorded:
    """Write ``{delivery id: SendResult | ChannelError | Deferral | Cancelled}`` for claimed rows.

    One short transaction: a conditional UPDATE of the rows still held by this claim, and the
    events of those rows. Returns what was written; the caller runs the follow-ups.
    """
    now = timezone.now()
    recorded = Recorded()
    events = []
    for delivery in deliveries:
        _apply(delivery, outcomes[delivery.id], now, config_id, reports_delivery, events, recorded)
    if not deliveries:
        return recorded
    for attempt in range(1, WRITE_ATTEMPTS + 1):
        try:
            with transaction.atomic():
                written = _write(deliveries, now)
                DeliveryEvent.objects.bulk_create(
                    [DeliveryEvent(delivery_id=delivery_id, status=status, detail=detail[:4000], at=at)
                     for delivery_id, status, detail, at in events if delivery_id in written])
            break
        except OperationalError:  # a deadlock, a failover: what the provider accepted must be written
            if attempt == WRITE_ATTEMPTS:
                raise
            logger.warning("Recording %d outcomes failed (attempt %d); retrying", len(deliveries), attempt,
                           exc_info=True)
            close_old_connections()
            time.sleep(min(0.1 * 2 ** attempt, 2.0))
    recorded.written = [d for d in deliveries if d.id in written]
    recorded.retry_soon = [(d, delay) for d, delay in recorded.retry_soon if d.id in written]
    lost = len(deliveries) - len(written)
    if lost:
        logger.warning("%d outcomes not recorded: their claim was taken over or cancelled", lost)
    return recorded


def _apply(delivery: Delivery, outcome, now, config_id, reports_delivery, events, recorded: Recorded) -> None:
    """Set the outcome's fields on ``delivery`` and note its events (in memory only)."""
    claimed_at = delivery.claimed_at or now
    delivery.followup = ""
    if isinstance(outcome, Deferral):
        delivery.status, delivery.reason, delivery.next_attempt_at = DeliveryStatus.PENDING, outcome.reason, \
            outcome.until
        delivery.attempts = max(0, delivery.attempts - 1)  # waiting is not an attempt
        deferral_note(delivery.explain, outcome)
        return
    if isinstance(outcome, Cancelled):
        delivery.status, delivery.reason, delivery.next_attempt_at = DeliveryStatus.CANCELLED, "cancelled", None
        delivery.attempts = max(0, delivery.attempts - 1)
        events.append((delivery.id, DeliveryStatus.CANCELLED, outcome.detail, now))
        return
    events.append((delivery.id, DeliveryStatus.SENDING, f"attempt {delivery.attempts}", claimed_at))
    delivery.channel_config_id = config_id
    template = delivery.message.template
    if isinstance(outcome, SendResult):
        delivery.status, delivery.reason, delivery.detail = DeliveryStatus.SENT, "", outcome.detail
        delivery.sent_at, delivery.provider_message_id = now, outcome.provider_message_id
        delivery.next_attempt_at = None
        timeout = template.fallback_timeout_seconds
        if reports_delivery and timeout and template.routing == RoutingMode.FALLBACK:
            delivery.fallback_at = now + timedelta(seconds=timeout)
        events.append((delivery.id, DeliveryStatus.SENT, f"attempt {delivery.attempts}: sent "
                       f"{outcome.provider_message_id} {outcome.detail}".strip(), now))
        return
    _apply_error(delivery, outcome, now, events, recorded)


def _apply_error(delivery: Delivery, error: ChannelError, now, events, recorded: Recorded) -> None:
    delivery.detail = getattr(error, "detail", str(error))
    transient = isinstance(error, TransientChannelError)
    if transient and delivery.attempts < settings.NOTIFYHUB_MAX_ATTEMPTS:
        delay = retry_delay(attempt=delivery.attempts, retry_after=error.retry_after)
        delivery.status, delivery.reason = DeliveryStatus.PENDING, "retrying"
        delivery.next_attempt_at = now + timedelta(seconds=delay)
        events.append((delivery.id, DeliveryStatus.PENDING,
                       f"attempt {delivery.attempts} failed, retry in {delay:.1f}s: {delivery.detail}", now))
        if delay <= settings.NOTIFYHUB_RETRY_COUNTDOWN_MAX_SECONDS:
            recorded.retry_soon.append((delivery, delay))  # longer waits are left to the due-time dispatcher
        return
    delivery.status = DeliveryStatus.FAILED
    if transient:  # a backend bug keeps its own name, so it is not mistaken for a provider outage
        delivery.reason = "backend_error" if error.code == "backend_error" else "max_attempts"
    else:
        delivery.reason = error.code or "permanent_error"
    delivery.next_attempt_at = None
    delivery.followup = followup_for(delivery, dead=isinstance(error, DeadAddressError))
    events.append((delivery.id, DeliveryStatus.FAILED, f"attempt {delivery.attempts}: {delivery.reason}: "
                   f"{delivery.detail}", now))


def followup_for(delivery: Delivery, *, dead: bool = False) -> str:
    """The bookkeeping a failed delivery owes: ``fallback`` and/or ``suppress``."""
    owed = []
    message = delivery.message
    if message.template.routing == RoutingMode.FALLBACK and not message.channels:
        owed.append("fallback")
    if dead and delivery.address:
        owed.append("suppress")
    return ",".join(owed)


def _write(deliveries: Sequence[Delivery], now) -> set:
    """The conditional UPDATE; returns the ids it wrote."""
    if connection.vendor == "postgresql":
        return _write_postgresql(deliveries, now)
    written = set()
    for d in deliveries:  # the embedded default (SQLite): small volumes, one statement a row
        values = {name: getattr(d, name) for name in FIELDS}
        if Delivery.objects.filter(pk=d.pk, claim_token=d.claim_token_at_claim, status=DeliveryStatus.SENDING).update(
                claim_token=None, updated_at=now, **values):
            written.add(d.pk)
    return written


def _write_postgresql(deliveries: Sequence[Delivery], now) -> set:
    table = Delivery._meta.db_table
    columns = {
        "id": ("uuid", [d.pk for d in deliveries]),
        "token": ("uuid", [d.claim_token_at_claim for d in deliveries]),
        "status": ("text", [d.status for d in deliveries]),
        "reason": ("text", [d.reason for d in deliveries]),
        "detail": ("text", [d.detail for d in deliveries]),
        "sent_at": ("timestamptz", [d.sent_at for d in deliveries]),
        "provider_message_id": ("text", [d.provider_message_id for d in deliveries]),
        "next_attempt_at": ("timestamptz", [d.next_attempt_at for d in deliveries]),
        "channel_config_id": ("bigint", [d.channel_config_id for d in deliveries]),
        "attempts": ("integer", [d.attempts for d in deliveries]),
        "explain": ("text", [json.dumps(d.explain, ensure_ascii=False) for d in deliveries]),
        "fallback_at": ("timestamptz", [d.fallback_at for d in deliveries]),
        "followup": ("text", [d.followup for d in deliveries]),
    }
    names = list(columns)
    unnest = ", ".join(f"%s::{kind}[]" for kind, _ in columns.values())
    assign = ", ".join(f"{name} = v.{name}" + ("::jsonb" if name == "explain" else "")
                       for name in names if name not in ("id", "token"))
    # Identifiers come from the model and the fixed column list above; every value is a parameter.
    sql = (f"UPDATE {table} AS d SET {assign}, claim_token = NULL, updated_at = %s "  # noqa: S608
           f"FROM (SELECT * FROM unnest({unnest}) AS u({', '.join(names)}) ORDER BY u.id) AS v "
           f"WHERE d.id = v.id AND d.claim_token = v.token AND d.status = %s RETURNING d.id")
    with connection.cursor() as cursor:
        cursor.execute(sql, [now, *(values for _, values in columns.values()), DeliveryStatus.SENDING])
        return {row[0] for row in cursor.fetchall()}
