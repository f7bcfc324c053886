"""Planning: decide, per recipient × channel, whether and how a delivery goes out, and write it.

For each recipient × channel the plan asks, in order: does the template have content for the
channel, is the channel configured, does the recipient allow it (preferences), is there an
address (and is it not suppressed)? Then it renders the content and applies the smart-delivery
rules. Every answer is kept in the delivery's ``explain`` list. Anything that goes wrong for one
recipient — a template error, a ``ZeroDivisionError`` in the recipient's data, bad unicode —
fails that recipient's delivery with ``render_error`` and leaves the others alone. A batch of
plans costs a constant number of queries whatever its size.
"""
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from django.db import DatabaseError
from django.utils import timezone
from redis.exceptions import RedisError

from channels_app.kinds import ChannelKind
from channels_app.registry import default_backend_for
from channels_app.selectors import channel_configs_for, channel_kinds_available
from notifyhub.messaging.copying import rows_copy
from notifyhub.messaging.models import Delivery, DeliveryStatus, Message, MessagePriority, RoutingMode
from notifyhub.messaging.queueing import BULK, TRANSACTIONAL, deliveries_batch, deliveries_enqueue
from notifyhub.messaging.rendering import content_for, recipient_context, render_parts
from notifyhub.messaging.services.events import events_record
from notifyhub.messaging.services.rules import duplicate_apply, frequency_cap_apply, plan_release, quiet_hours_apply
from preferences.models import Recipient
from preferences.selectors import contact_points_by_recipient, preference_decide, preferences_by_recipient

logger = logging.getLogger(__name__)
#: Errors of the hub's own services, not of one recipient's data: they fail the whole batch.
INFRASTRUCTURE_ERRORS = (DatabaseError, RedisError)
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
    reservations: list = field(default_factory=list)  # how to give back dedup and cap units


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
            try:
                if context is None:
                    context = {**message.context, "recipient": recipient_context(
                        external_id=recipient.external_id, name=recipient.name,
                        locale=recipient.locale, data=recipient.data)}
                _plan_channel(plan, message=message, category=category, contacts=contacts.get(recipient.pk, {}),
                              preferences=preferences.get(recipient.pk, ()), available=available, served=served,
                              context=context, at=at, reserve=reserve)
            except INFRASTRUCTURE_ERRORS:
                raise  # Redis or the database is down: the whole chunk is retried, nobody is failed
            except Exception as exc:  # one recipient's data must not sink the chunk
                plan_failed(plan, exc)
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
    plan.content = render_parts(parts, context)  # any error fails this plan (see plan_failed)
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


def plan_failed(plan: DeliveryPlan, exc: BaseException) -> None:
    """The plan could not be made (rendering, the recipient's data): fail it with the error text.

    What it reserved before the error (a dedup window, cap units) is given back.
    """
    text = f"{exc.__class__.__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)
    text = text.encode("utf-8", "replace").decode("utf-8")[:1000]
    if not isinstance(exc, ValueError):
        logger.info("Planning %s for %s failed: %s", plan.channel, plan.recipient.pk, text)
    plan_release(plan)
    plan.status, plan.reason, plan.content, plan.next_attempt_at = DeliveryStatus.FAILED, "render_error", {}, None
    plan.explain.append(f"rendering failed: {text}")


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


def deliveries_create(*, message: Message, plans: Sequence[DeliveryPlan], fresh: bool = False) -> list[Delivery]:
    """Write the planned deliveries and enqueue the queued ones once the transaction commits.

    Callers plan only recipients without deliveries on those channels (see
    :func:`recipients_without_deliveries`). ``fresh``: the caller holds a lock that rules out a
    racing writer (a dispatch chunk), so rows are streamed with ``COPY``; otherwise
    ``ignore_conflicts`` keeps a racing repeat (two fallbacks) harmless.
    Each queued row carries the id of the broker task that will carry it (``enqueue_id``), so the
    sweeper can tell a lost broker message from a long backlog.
    """
    now = timezone.now()
    rows = [
        Delivery(message=message, recipient=p.recipient, channel=p.channel, address=p.address, app=p.app,
                 lane=p.lane, content=p.content, status=p.status, reason=p.reason, explain=p.explain,
                 next_attempt_at=p.next_attempt_at, fallback_from_id=p.fallback_from_id,
                 created_at=now, updated_at=now)
        for p in plans
    ]
    batches = deliveries_batch(deliveries=((d.channel, d.lane, d) for d in rows if d.status == DeliveryStatus.QUEUED))
    for batch in batches:
        for delivery in batch.items:
            delivery.enqueue_id = batch.task_id
    if fresh:
        rows_copy(Delivery, rows)
    else:
        Delivery.objects.bulk_create(rows, ignore_conflicts=True)
        inserted = set(Delivery.objects.filter(pk__in=[d.pk for d in rows]).values_list("pk", flat=True))
        rows = [d for d in rows if d.pk in inserted]  # a racing repeat inserted the others
        batches = [batch for batch in batches if any(d.pk in inserted for d in batch.items)]
    events_record(changes=((d.id, d.status, d.explain[-1] if d.explain else "") for d in rows))
    deliveries_enqueue(batches=batches)
    return rows


def recipients_without_deliveries(*, message: Message, recipients: Sequence[Recipient],
                                  channels: Sequence[str]) -> list[Recipient]:
    """The recipients that have no delivery of ``message`` on any of ``channels`` yet (one query)."""
    if not recipients:
        return []
    done = set(Delivery.objects.filter(message=message, recipient__in=[r.pk for r in recipients],
                                       channel__in=list(channels)).order_by().values_list("recipient_id", flat=True))
    return [r for r in recipients if r.pk not in done]
