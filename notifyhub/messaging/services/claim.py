"""Claiming deliveries for a send, and keeping the claim alive while the batch runs.

The claim is one conditional UPDATE (``queued`` or due ``pending`` -> ``sending``, under a new
claim token), so a task that runs twice — a redelivered broker message, a sweeper re-enqueue —
sends nothing twice. Rows of a cancelled message are moved to ``cancelled`` instead of claimed.
While the batch runs, a heartbeat thread refreshes ``claimed_at`` every
``NOTIFYHUB_HEARTBEAT_SECONDS``; a claim whose heartbeat is older than
``NOTIFYHUB_STUCK_SECONDS`` belongs to a dead worker and is re-queued by the sweeper.
"""
import logging
import threading
import uuid

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from notifyhub.messaging.models import Delivery, DeliveryEvent, DeliveryStatus, Message, MessageStatus
from notifyhub.messaging.services.rules import deliveries_reservations_release
from preferences.models import Recipient

logger = logging.getLogger(__name__)


def _ready(now) -> Q:
    return Q(status=DeliveryStatus.QUEUED) | Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)


def deliveries_claim(*, delivery_ids) -> list[Delivery]:
    """Move the given deliveries that are ready to ``sending`` and return them.

    A constant number of statements per batch: rows of cancelled messages are cancelled (one
    UPDATE), the rest claimed (one UPDATE … RETURNING on PostgreSQL), and their messages and
    recipients loaded once each (two SELECTs).
    """
    now = timezone.now()
    token = uuid.uuid4()
    ids = list(delivery_ids)
    cancelled = Message.objects.filter(status=MessageStatus.CANCELLED).values("pk")
    with transaction.atomic():
        dropped_ids = list(Delivery.objects.filter(_ready(now), pk__in=ids, message__in=cancelled)
                           .values_list("pk", flat=True))
        if dropped_ids:
            Delivery.objects.filter(_ready(now), pk__in=dropped_ids).update(
                status=DeliveryStatus.CANCELLED, reason="cancelled", updated_at=now, next_attempt_at=None)
            DeliveryEvent.objects.bulk_create([DeliveryEvent(delivery_id=pk, status=DeliveryStatus.CANCELLED,
                                                             detail="message cancelled", at=now)
                                               for pk in dropped_ids])
            transaction.on_commit(lambda: deliveries_reservations_release(
                Delivery.objects.filter(pk__in=dropped_ids).select_related("message__template__category")))
    if connection.vendor != "postgresql":
        ready = Delivery.objects.filter(_ready(now), pk__in=ids).exclude(message__in=cancelled)
        if not ready.update(status=DeliveryStatus.SENDING, claim_token=token, claimed_at=now, updated_at=now,
                            attempts=F("attempts") + 1):
            return []
        return _attach(list(Delivery.objects.filter(claim_token=token)), token)
    return claim_update(ids, now, assign="status = %s, claim_token = %s, claimed_at = %s",
                        params=[DeliveryStatus.SENDING, token, now], token=token)


def claim_update(ids: list, now, *, assign: str, params: list, token, skip_reason: str = "") -> list[Delivery]:
    """One ``UPDATE … RETURNING`` of the rows of ``ids`` that are ready (PostgreSQL): ``assign``
    (with ``params``) plus an attempt and ``updated_at``; the returned rows loaded as deliveries.

    Rows are locked in id order, skipping rows another transaction holds (a cancel, a sweep): no
    lock-order deadlock with them, and a skipped row is picked up by its own path. Rows of
    cancelled messages, and rows whose reason is ``skip_reason``, are left alone.
    """
    columns = ", ".join(f"d.{f.column}" for f in Delivery._meta.concrete_fields)
    table, message_table = Delivery._meta.db_table, Message._meta.db_table
    # Identifiers come from the models and the callers' fixed assignments; every value is a parameter.
    sql = (f"WITH ready AS (SELECT d.id FROM {table} d WHERE d.id = ANY(%s) "  # noqa: S608
           f"AND (d.status = %s OR (d.status = %s AND d.next_attempt_at <= %s)) "
           f"{'AND d.reason <> %s ' if skip_reason else ''}"
           f"AND NOT EXISTS (SELECT 1 FROM {message_table} m WHERE m.id = d.message_id AND m.status = %s) "
           f"ORDER BY d.id FOR UPDATE OF d SKIP LOCKED) "
           f"UPDATE {table} AS d SET {assign}, updated_at = %s, attempts = d.attempts + 1 "
           f"FROM ready WHERE d.id = ready.id RETURNING {columns}")
    with connection.cursor() as cursor:
        cursor.execute(sql, [ids, DeliveryStatus.QUEUED, DeliveryStatus.PENDING, now,
                             *([skip_reason] if skip_reason else []), MessageStatus.CANCELLED, *params, now])
        return claimed_rows_load(cursor.fetchall(), token=token)


def claimed_rows_load(rows, *, token) -> list[Delivery]:
    """Deliveries from ``RETURNING`` rows of every column, with messages and recipients loaded
    once per batch (two queries)."""
    fields = Delivery._meta.concrete_fields
    converters = [(index, f, f.get_db_converters(connection)) for index, f in enumerate(fields)]
    converters = [c for c in converters if c[2]]
    names = [f.attname for f in fields]
    deliveries = []
    for row in rows:
        values = list(row)
        for index, field, functions in converters:
            for converter in functions:
                values[index] = converter(values[index], field, connection)
        deliveries.append(Delivery.from_db(connection.alias, names, values))
    return _attach(deliveries, token)


def _attach(deliveries: list[Delivery], token) -> list[Delivery]:
    if not deliveries:
        return []
    messages = Message.objects.select_related("template__category").in_bulk({d.message_id for d in deliveries})
    recipients = Recipient.objects.in_bulk({d.recipient_id for d in deliveries})
    for delivery in deliveries:
        delivery.message = messages[delivery.message_id]
        delivery.recipient = recipients[delivery.recipient_id]
        delivery.claim_token_at_claim = token  # outcomes clear claim_token; the heartbeat still needs it
    return deliveries


class Heartbeat:
    """Refreshes a claim's ``claimed_at`` from a thread until stopped (a context manager)."""

    def __init__(self, token):
        self.token = token
        self.interval = max(0.2, min(settings.NOTIFYHUB_HEARTBEAT_SECONDS, settings.NOTIFYHUB_STUCK_SECONDS / 3))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="notifyhub-heartbeat", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        return False

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    # Rows the batch's own outcome write holds are skipped, never waited for: no
                    # lock-order deadlock between the heartbeat and the flush.
                    with transaction.atomic():
                        held = (Delivery.objects.select_for_update(skip_locked=True)
                                .filter(claim_token=self.token, status=DeliveryStatus.SENDING).values("pk"))
                        Delivery.objects.filter(pk__in=held).update(claimed_at=timezone.now())
                except Exception:
                    logger.exception("Claim heartbeat failed")
        finally:
            connection.close()


def cancelled_among(message_ids) -> set:
    """Which of these messages were cancelled (checked before each send group)."""
    return set(Message.objects.filter(pk__in=set(message_ids), status=MessageStatus.CANCELLED)
               .values_list("pk", flat=True))
