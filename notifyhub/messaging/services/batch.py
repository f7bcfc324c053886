"""A batch in flight: turning deliveries into outbound messages and recording outcomes as they come.

Outcomes are written at least every ``FLUSH_SECONDS`` (and every ``FLUSH_EVERY`` sends), so a
worker killed mid-batch leaves only the sends of that last moment unrecorded, to be sent again;
a fast batch (in-app, concurrent HTTP) is still recorded in one write. Before each send group
the batch checks whether a message was cancelled meanwhile (:func:`gate`).
"""
import time

from channels_app.message import OutboundMessage
from notifyhub.messaging.models import Delivery
from notifyhub.messaging.services.claim import cancelled_among
from notifyhub.messaging.services.followups import outcomes_settle
from notifyhub.messaging.services.retries import Cancelled

FLUSH_EVERY = 200
FLUSH_SECONDS = 0.5
#: A group sent one by one looks for a cancel this often.
CANCEL_CHECK_SECONDS = 0.5


def outbound(delivery: Delivery) -> OutboundMessage:
    message = delivery.message
    return OutboundMessage(
        delivery_id=str(delivery.id), kind=delivery.channel, address=delivery.address,
        content=delivery.content,
        metadata={"message_id": str(message.id), "template": message.template.key,
                  "recipient": delivery.recipient.external_id},
    )


def gate(deliveries: list[Delivery]) -> tuple[list[Delivery], list[tuple[str, Cancelled]]]:
    """Split a send group into what may go and ``(id, Cancelled)`` for cancelled messages' rows."""
    if not deliveries:
        return [], []
    cancelled = cancelled_among(d.message_id for d in deliveries)
    if not cancelled:
        return deliveries, []
    return ([d for d in deliveries if d.message_id not in cancelled],
            [(str(d.id), Cancelled()) for d in deliveries if d.message_id in cancelled])


class _Stream:
    """The outbound messages of a group, checking every ``CANCEL_CHECK_SECONDS`` whether a
    message was cancelled meanwhile; it stops there and keeps what it did not hand out."""

    def __init__(self, deliveries: list[Delivery]):
        self.deliveries, self.unsent = deliveries, []

    def __iter__(self):
        checked = time.monotonic()
        for index, delivery in enumerate(self.deliveries):
            if time.monotonic() - checked >= CANCEL_CHECK_SECONDS:
                checked = time.monotonic()
                if cancelled_among({d.message_id for d in self.deliveries[index:]}):
                    self.unsent = self.deliveries[index:]
                    return
            yield outbound(delivery)


def send_group(backend, deliveries: list[Delivery]):
    """Yield ``(delivery id, outcome)`` for one group sent through ``backend.send_many``.

    Cancelled messages are checked before the group and, for backends that send one by one
    (SMTP), every ``CANCEL_CHECK_SECONDS`` while it is sent.
    """
    rest = deliveries
    while rest:
        go, cancelled = gate(rest)
        yield from cancelled
        stream = _Stream(go)
        if go:
            for message, outcome in backend.send_many(iter(stream)):
                yield message.delivery_id, outcome
        rest = stream.unsent


class Flusher:
    """Collects outcomes and records them at least every ``FLUSH_SECONDS`` or ``FLUSH_EVERY``."""

    def __init__(self, by_id: dict, *, config_id, reports_delivery: bool = False):
        self.by_id, self.config_id, self.reports_delivery = by_id, config_id, reports_delivery
        self.pending: dict = {}
        self.flushed_at = time.monotonic()

    def add(self, delivery_id: str, outcome) -> None:
        self.pending[delivery_id] = outcome
        if len(self.pending) >= FLUSH_EVERY or time.monotonic() - self.flushed_at >= FLUSH_SECONDS:
            self.flush()

    def fail_rest(self, error) -> None:
        self.pending.update({key: error for key in self.by_id if key not in self.pending})

    def flush(self) -> None:
        if not self.pending:
            return
        rows = [self.by_id.pop(key) for key in self.pending]
        outcomes = {d.id: self.pending[str(d.id)] for d in rows}
        self.pending.clear()
        outcomes_settle(deliveries=rows, outcomes=outcomes, config_id=self.config_id,
                        reports_delivery=self.reports_delivery)
        self.flushed_at = time.monotonic()
