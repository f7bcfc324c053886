"""Recording state changes: every transition appends a ``DeliveryEvent``."""
from collections.abc import Iterable

from django.utils import timezone

from notifyhub.messaging.models import DeliveryEvent


def events_record(*, changes: Iterable[tuple[object, str, str]]) -> None:
    """Bulk-append events; ``changes`` yields ``(delivery_id, status, detail)``."""
    now = timezone.now()
    DeliveryEvent.objects.bulk_create(
        [DeliveryEvent(delivery_id=delivery_id, status=status, detail=detail[:4000], at=now)
         for delivery_id, status, detail in changes]
    )
