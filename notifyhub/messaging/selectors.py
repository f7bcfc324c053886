"""Reads on messages and deliveries."""
from django.db.models import Prefetch, QuerySet

from notifyhub.messaging.models import Delivery, DeliveryEvent, Message


def messages_for_key(*, api_key) -> QuerySet[Message]:
    """Only the messages this API key sent."""
    return Message.objects.filter(api_key=api_key).select_related("template")


def message_with_deliveries(*, queryset: QuerySet[Message]) -> QuerySet[Message]:
    deliveries = Delivery.objects.select_related("recipient").prefetch_related(
        Prefetch("events", queryset=DeliveryEvent.objects.order_by("at", "id"))
    )
    return queryset.prefetch_related(Prefetch("deliveries", queryset=deliveries))
