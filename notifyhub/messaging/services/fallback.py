"""Channel fallback: plan the next channel of a template's chain for deliveries that cannot deliver."""
from collections.abc import Sequence

from notifyhub.messaging.models import Delivery, Message, MessageStatus, RoutingMode
from notifyhub.messaging.services.planning import deliveries_create, deliveries_plan, recipients_without_deliveries


def fallback_next(*, deliveries: Sequence[Delivery], why: str) -> list[Delivery]:
    """Plan and create the next channel of the fallback chain for deliveries that cannot deliver.

    Deliveries are grouped by message and channel, so a failed batch costs one plan per group.
    Recipients that already have a delivery further down the chain are left out before planning
    (and the unique (message, recipient, channel) constraint backs it), so a timeout and a late
    failure, or a follow-up redone by the sweeper, never fall back twice.
    """
    cancelled = set(Message.objects.filter(pk__in={d.message_id for d in deliveries}, status=MessageStatus.CANCELLED)
                    .values_list("pk", flat=True))
    groups: dict[tuple, list[Delivery]] = {}
    for delivery in deliveries:
        message = delivery.message
        if message.pk in cancelled:
            continue
        if message.template.routing == RoutingMode.FALLBACK and not message.channels:
            groups.setdefault((message.pk, delivery.channel), []).append(delivery)
    created = []
    for (_, channel), group in groups.items():
        message = group[0].message
        chain = message.template.channels
        rest = chain[chain.index(channel) + 1:] if channel in chain else []
        if not rest:
            continue
        source = {d.recipient_id: d for d in group}
        recipients = recipients_without_deliveries(message=message, recipients=[d.recipient for d in group],
                                                   channels=rest)
        plans = deliveries_plan(message=message, recipients=recipients, channels=rest)
        for plan in plans:
            plan.fallback_from_id = source[plan.recipient.pk].pk
            plan.explain.insert(0, f"fallback from {channel}: {why}")
        created += deliveries_create(message=message, plans=plans)
    return created
