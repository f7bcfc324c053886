"""Reads the API answers with: a message's deliveries, page by page, in a constant number of
queries per page (recipient and provider account joined, events prefetched in one query)."""
from django.db.models import Prefetch, QuerySet

from notifyhub.messaging.models import Delivery, DeliveryEvent, Message

DELIVERY_ORDER = ("created_at", "id")


def message_deliveries(*, message: Message, status: str = "", channel: str = "", reason: str = "",
                       events: bool = True) -> QuerySet[Delivery]:
    """The message's deliveries, oldest first, optionally filtered."""
    queryset = Delivery.objects.filter(message=message).select_related("recipient", "channel_config")
    if status:
        queryset = queryset.filter(status=status)
    if channel:
        queryset = queryset.filter(channel=channel)
    if reason:
        queryset = queryset.filter(reason=reason)
    if events:
        queryset = queryset.prefetch_related(Prefetch("events", queryset=DeliveryEvent.objects.order_by("at", "id")))
    return queryset.order_by(*DELIVERY_ORDER)


def message_deliveries_first_page(*, message: Message, size: int, events: bool = True) -> tuple[list[Delivery], bool]:
    """The first ``size`` deliveries and whether there are more (one row more is read, never a count)."""
    rows = list(message_deliveries(message=message, events=events)[: size + 1])
    return rows[:size], len(rows) > size
