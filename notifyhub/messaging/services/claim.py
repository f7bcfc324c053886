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

logger = logging.getLogger(__name__)


def _ready(now) -> Q:
    return Q(status=DeliveryStatus.QUEUED) | Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)


def deliveries_claim(*, delivery_ids) -> list[Delivery]:
    """Move the given deliveries that are ready to ``sending`` and return them (three queries)."""
    now = timezone.now()
    token = uuid.uuid4()
    ids = list(delivery_ids)
    cancelled = Message.objects.filter(status=MessageStatus.CANCELLED)
    with transaction.atomic():
        dropped = list(Delivery.objects.filter(_ready(now), pk__in=ids, message__in=cancelled)
                       .select_for_update(of=("self",), skip_locked=True).values_list("pk", flat=True))
        if dropped:
            Delivery.objects.filter(pk__in=dropped).update(status=DeliveryStatus.CANCELLED, reason="cancelled",
                                                           updated_at=now, next_attempt_at=None)
            DeliveryEvent.objects.bulk_create([DeliveryEvent(delivery_id=pk, status=DeliveryStatus.CANCELLED,
                                                             detail="message cancelled", at=now) for pk in dropped])
    claimed = Delivery.objects.filter(_ready(now), pk__in=ids).exclude(message__in=cancelled).update(
        status=DeliveryStatus.SENDING, claim_token=token, claimed_at=now, updated_at=now,
        attempts=F("attempts") + 1,
    )
    if not claimed:
        return []
    deliveries = list(Delivery.objects.filter(claim_token=token).select_related("message__template__category",
                                                                                "recipient"))
    for delivery in deliveries:
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
        if connection.vendor != "sqlite":  # SQLite: one writer at a time; the embedded default waits
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
                    Delivery.objects.filter(claim_token=self.token, status=DeliveryStatus.SENDING).update(
                        claimed_at=timezone.now())
                except Exception:
                    logger.exception("Claim heartbeat failed")
        finally:
            connection.close()


def cancelled_among(message_ids) -> set:
    """Which of these messages were cancelled (checked before each send group)."""
    return set(Message.objects.filter(pk__in=set(message_ids), status=MessageStatus.CANCELLED)
               .values_list("pk", flat=True))
