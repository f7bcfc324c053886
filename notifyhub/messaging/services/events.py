"""Recording state changes: every transition appends a ``DeliveryEvent``."""
from collections.abc import Iterable

from django.utils import timezone

from notifyhub.messaging.copying import rows_copy
from notifyhub.messaging.models import DeliveryEvent


def events_record(*, changes: Iterable[tuple[object, str, str]]) -> None:
    """Append events (``COPY`` on PostgreSQL); ``changes`` yields ``(delivery_id, status, detail)``.

    The deliveries must exist in this transaction (events of rows another transaction may
    delete are written with the outcome instead, see :mod:`.outcomes`).
    """
    now = timezone.now()
    rows_copy(DeliveryEvent, [DeliveryEvent(delivery_id=delivery_id, status=status, detail=detail[:4000], at=now,
                                            external_id="") for delivery_id, status, detail in changes])
