"""Dispatch: turn a message's audience into deliveries, one chunk of recipients at a time.

For each recipient × channel the plan asks, in order: does the template have content for the
channel, is the channel configured, does the recipient allow it (preferences), is there an
address (and is it not suppressed)? Then it renders the content. Every answer is kept in the
delivery's ``explain`` list. A chunk costs a constant number of queries whatever its size.
"""
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from channels_app.kinds import ChannelKind
from channels_app.registry import default_backend_for
from channels_app.selectors import channel_configs_for, channel_kinds_available
from notifyhub.messaging.models import (
    Delivery,
    DeliveryStatus,
    Message,
    MessagePriority,
    MessageRecipient,
    MessageStatus,
    RoutingMode,
)
from notifyhub.messaging.queueing import BULK, TRANSACTIONAL, deliveries_enqueue, dispatch_enqueue
from notifyhub.messaging.rendering import RenderError, content_for, recipient_context, render_parts
from notifyhub.messaging.services.events import events_record
from notifyhub.messaging.services.outcomes import messages_rollup
from notifyhub.messaging.services.rules import duplicate_apply, frequency_cap_apply, quiet_hours_apply
from preferences.models import Recipient
from preferences.selectors import contact_points_by_recipient, preference_decide, preferences_by_recipient

ACCOUNT_FREE_ADDRESS = {ChannelKind.INAPP}  # address is the recipient itself
OPTIONAL_ADDRESS = {ChannelKind.WEBHOOK}  # falls back to the account's URL


@dataclass
class DeliveryPlan:
    recipient: Recipient
    channel: str
    status: str
    reason: str = ""
    address: str = ""
    app: str = ""
    lane: str = BULK
    content: dict = field(default_factory=dict)
    explain: list[str] = field(default_factory=list)
    next_attempt_at: datetime | None = None
    fallback_from_id: object = None


def deliveries_plan(*, message: Message, recipients: Sequence[Recipient], channels: Sequence[str] | None = None,
                    reserve: bool = True) -> list[DeliveryPlan]:
    """Decide and render. Writes nothing to the database; ``reserve=False`` (dry runs) also
    leaves the dedup and frequency-cap counters untouched.

    With the template's ``fallback`` routing only the first channel of the chain that can
    deliver is planned (channels skipped on the way are planned as skipped); the next one is
    planned later, if that one fails (:func:`fallback_next`).
    """
    template = message.template
    category = template.category
    fallback = template.routing == RoutingMode.FALLBACK and not message.channels
    if channels is None:
        channels = message.channels or template.channels
    ids = [r.pk for r in recipients]
    contacts = contact_points_by_recipient(recipient_ids=ids)
    preferences = preferences_by_recipient(recipient_ids=ids)
    available = channel_kinds_available()
    served = _served_by_accounts()
    lane = TRANSACTIONAL if category.critical or message.priority == MessagePriority.HIGH else BULK
    at = max(timezone.now(), message.send_at) if message.send_at else timezone.now()
    plans = []
    for recipient in recipients:
        context = None
        for position, channel in enumerate(channels):
            plan = DeliveryPlan(recipient=recipient, channel=channel, status=DeliveryStatus.QUEUED, lane=lane)
            plans.append(plan)
            if fallback:
                plan.explain.append(f"fallback chain {' → '.join(channels)}: trying {channel} "
                                    f"({position + 1} of {len(channels)})")
            if context is None:
                context = {**message.context, "recipient": recipient_context(
                    external_id=recipient.external_id, name=recipient.name,
                    locale=recipient.locale, data=recipient.data)}
            _plan_channel(plan, message=message, category=category, contacts=contacts.get(recipient.pk, {}),
                          preferences=preferences.get(recipient.pk, ()), available=available, served=served,
                          context=context,
                          at=at, reserve=reserve)
            if fallback and plan.status in (DeliveryStatus.QUEUED, DeliveryStatus.PENDING):
                break  # the rest of the chain waits for this channel's outcome
            if fallback and plan.reason == "duplicate":
                plan.explain.append("fallback chain stops: the recipient already has this message")
                break
    return plans


def _plan_channel(plan: DeliveryPlan, *, message, category, contacts, preferences, available, served, context, at,
                  reserve) -> None:
    template, channel = message.template, plan.channel
    parts = content_for(content=template.content, translations=template.translations,
                        channel=channel, locale=plan.recipient.locale)
    if parts is None:
        return _skip(plan, "no_content", f"template {template.key} has no {channel} content")
    if channel not in available:
        return _skip(plan, "channel_unavailable", f"no enabled {channel} channel is configured")
    decision = preference_decide(category=category, channel=channel, preferences=preferences)
    plan.explain.append(f"{decision.rule}: {'allowed' if decision.allowed else 'blocked'}")
    if not decision.allowed:
        return _skip(plan, decision.reason, "")
    if not _address(plan, contacts, served):
        return None
    quiet_hours_apply(plan, category=category, at=at)
    if plan.status == DeliveryStatus.SKIPPED:
        return None
    try:
        plan.content = render_parts(parts, context)
    except RenderError as exc:
        plan.status, plan.reason = DeliveryStatus.FAILED, "render_error"
        plan.explain.append(f"rendering failed: {exc}")
        return None
    duplicate_apply(plan, message=message, reserve=reserve)
    if plan.status == DeliveryStatus.SKIPPED:
        return None
    frequency_cap_apply(plan, message=message, category=category, reserve=reserve)
    if plan.status == DeliveryStatus.QUEUED:
        plan.explain.append(f"queued for {channel} to {address_label(plan.address) or 'the account URL'} "
                            f"({plan.lane} lane)")
    elif plan.status == DeliveryStatus.PENDING:
        plan.explain.append(f"pending until {plan.next_attempt_at.isoformat()}")
    return None


def _skip(plan: DeliveryPlan, reason: str, detail: str) -> None:
    plan.status, plan.reason = DeliveryStatus.SKIPPED, reason
    if detail:
        plan.explain.append(detail)
    plan.explain.append(f"skipped: {reason}")


def _address(plan: DeliveryPlan, contacts: dict, served) -> bool:
    """The newest active address an enabled account can serve (``served(kind, app)``)."""
    if plan.channel in ACCOUNT_FREE_ADDRESS:
        plan.address = plan.recipient.external_id
        return True
    points = contacts.get(plan.channel, ())
    active = [p for p in points if p.active]
    usable = [p for p in active if served(plan.channel, p.app)]
    if usable:
        point = usable[0]
        plan.address, plan.app = point.address, point.app
        plan.explain.append(f"address: {address_label(point.address)}" + (f" ({point.app})" if point.app else ""))
        return True
    if active:
        apps = ", ".join(sorted({p.app or "any" for p in active}))
        _skip(plan, "channel_unavailable", f"no enabled {plan.channel} account serves the recipient's apps ({apps})")
        return False
    if points:
        point = points[0]
        _skip(plan, "suppressed", f"{plan.channel} address {address_label(point.address)} is deactivated "
                                  f"({point.deactivated_reason or 'suppressed'})")
        return False
    if plan.channel in OPTIONAL_ADDRESS:
        return True
    _skip(plan, "no_address", f"recipient has no {plan.channel} address")
    return False


def address_label(address: str) -> str:
    """An address as explanations show it: a Web Push subscription by its push service only
    (its keys stay out of logs and API answers)."""
    if address.startswith("{"):
        try:
            return f"subscription at {urlsplit(json.loads(address)['endpoint']).netloc}"
        except (ValueError, KeyError, TypeError):
            return "subscription"
    return address


def _served_by_accounts():
    """``served(kind, app)``: may an enabled account send to an address of ``app``? Cached per plan."""
    cache: dict = {}

    def served(kind: str, app: str) -> bool:
        if (kind, app) not in cache:
            cache[(kind, app)] = bool(channel_configs_for(kind=kind, app=app)) or (
                not app and default_backend_for(kind) is not None)
        return cache[(kind, app)]
    return served


def deliveries_create(*, message: Message, plans: Sequence[DeliveryPlan]) -> list[Delivery]:
    """Write the planned deliveries (skipping any that exist) and enqueue the queued ones."""
    existing = set(
        Delivery.objects.filter(message=message, recipient__in={p.recipient.pk for p in plans})
        .values_list("recipient_id", "channel")
    )
    now = timezone.now()
    rows = [
        Delivery(message=message, recipient=p.recipient, channel=p.channel, address=p.address, app=p.app,
                 lane=p.lane, content=p.content, status=p.status, reason=p.reason, explain=p.explain,
                 next_attempt_at=p.next_attempt_at, fallback_from_id=p.fallback_from_id,
                 created_at=now, updated_at=now)
        for p in plans if (p.recipient.pk, p.channel) not in existing
    ]
    Delivery.objects.bulk_create(rows)
    events_record(changes=((d.id, d.status, d.explain[-1] if d.explain else "") for d in rows))
    deliveries_enqueue(deliveries=((d.channel, d.lane, d.id) for d in rows if d.status == DeliveryStatus.QUEUED))
    return rows


def message_dispatch_inline(*, message: Message, recipients: Sequence[Recipient]) -> list[Delivery]:
    """Dispatch a small message inside the accepting transaction, so the answer lists deliveries."""
    rows = deliveries_create(message=message, plans=deliveries_plan(message=message, recipients=recipients))
    messages_rollup(message_ids=[message.pk])
    return rows


def message_dispatch_start(*, message_id) -> int:
    """Split a message's audience into chunks and enqueue one task per chunk."""
    from django.conf import settings

    size = settings.NOTIFYHUB_DISPATCH_CHUNK_SIZE
    with transaction.atomic():
        message = Message.objects.select_for_update().filter(pk=message_id, status=MessageStatus.ACCEPTED).first()
        if message is None or message.chunks_pending:
            return 0
        ids = list(MessageRecipient.objects.filter(message=message).order_by("id").values_list("id", flat=True))
        chunks = [(ids[i], ids[min(i + size, len(ids)) - 1]) for i in range(0, len(ids), size)]
        message.chunks_pending = len(chunks)
        message.status = MessageStatus.PROCESSING if chunks else MessageStatus.SKIPPED
        message.save(update_fields=["chunks_pending", "status", "updated_at"])
        for first_id, last_id in chunks:
            dispatch_enqueue(message_id=message.pk, first_id=first_id, last_id=last_id)
    return len(chunks)


@transaction.atomic
def message_dispatch_chunk(*, message_id, first_id: int, last_id: int) -> int:
    """Plan and create the deliveries of one chunk of the audience; repeat runs create nothing."""
    message = Message.objects.select_related("template__category").get(pk=message_id)
    if message.status == MessageStatus.CANCELLED:
        return 0
    recipients = list(
        Recipient.objects.filter(pk__in=MessageRecipient.objects.filter(
            message=message, id__gte=first_id, id__lte=last_id).values("recipient_id"))
    )
    plans = deliveries_plan(message=message, recipients=recipients)
    rows = deliveries_create(message=message, plans=plans)
    if rows or not plans:  # a repeated run of this chunk creates nothing and counts nothing
        Message.objects.filter(pk=message.pk, chunks_pending__gt=0).update(
            chunks_pending=F("chunks_pending") - 1)
    messages_rollup(message_ids=[message.pk])
    return len(rows)


def fallback_next(*, deliveries: Sequence[Delivery], why: str) -> list[Delivery]:
    """Plan and create the next channel of the fallback chain for deliveries that cannot deliver.

    Deliveries are grouped by message and channel, so a failed batch costs one plan per group.
    The unique (message, recipient, channel) constraint makes a second call for the same
    delivery create nothing, so a timeout and a late failure never fall back twice.
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
        plans = deliveries_plan(message=message, recipients=[d.recipient for d in group], channels=rest)
        for plan in plans:
            plan.fallback_from_id = source[plan.recipient.pk].pk
            plan.explain.insert(0, f"fallback from {channel}: {why}")
        created += deliveries_create(message=message, plans=plans)
    return created
