"""The smart-delivery rules a planned delivery passes after preferences and address.

In order: quiet hours (defer, drop or ignore, per category; critical categories ignore them),
deduplication (same template, recipient, channel and rendered content within the template's
window), then frequency caps (per category and channel, per recipient, per rolling period).
Dedup and caps keep their counters in Redis, so they are exact across workers; both are keyed
by a token stable for one message × recipient × channel, so a repeated dispatch of the same
chunk counts nothing twice. ``reserve=False`` (dry runs) only looks.
"""
from datetime import datetime, timedelta

from django.utils import timezone

from notifyhub.messaging import limits
from notifyhub.messaging.models import DeliveryStatus, Message
from preferences.models import Category, OverCapPolicy, Recipient
from preferences.selectors import quiet_hours_decide


def plan_token(*, message: Message, recipient: Recipient, channel: str) -> str:
    return f"{message.pk or 'preview'}:{recipient.pk}:{channel}"


def quiet_hours_apply(plan, *, category: Category, at: datetime) -> None:
    decision = quiet_hours_decide(category=category, recipient=plan.recipient, at=at)
    if decision.rule:
        plan.explain.append(decision.rule)
    if decision.action == "defer":
        plan.status, plan.reason, plan.next_attempt_at = DeliveryStatus.PENDING, "quiet_hours", decision.until
    elif decision.action == "drop":
        plan.status, plan.reason = DeliveryStatus.SKIPPED, "quiet_hours"
        plan.explain.append("skipped: quiet_hours")


def duplicate_apply(plan, *, message: Message, reserve: bool) -> None:
    window = message.template.dedup_window_seconds
    if not window:
        return
    fingerprint = limits.content_fingerprint(message.template.key, plan.recipient.pk, plan.channel, plan.content)
    token = plan_token(message=message, recipient=plan.recipient, channel=plan.channel)
    if reserve:
        earlier = limits.duplicate_check(fingerprint=fingerprint, window_seconds=window, token=token)
    else:
        earlier = limits.duplicate_peek(fingerprint=fingerprint, token=token)
    if earlier:
        plan.status, plan.reason = DeliveryStatus.SKIPPED, "duplicate"
        plan.explain.append(f"dedup: same content sent within {window}s (message {earlier.split(':')[0]})")
        plan.explain.append("skipped: duplicate")
    else:
        plan.explain.append(f"dedup: first of this content within {window}s")


def frequency_cap_apply(plan, *, message: Message, category: Category, reserve: bool) -> None:
    caps = [cap for cap in category.frequency_caps or () if cap.get("channel") in (plan.channel, "*")]
    token = plan_token(message=message, recipient=plan.recipient, channel=plan.channel)
    for cap in caps:
        limit, period = int(cap["limit"]), int(cap["period"])
        take = limits.frequency_cap_take if reserve else limits.frequency_cap_peek
        # One counter per (channel, period): two caps on one channel must not trim each other's window.
        decision = take(recipient_id=plan.recipient.pk, category=category.key, channel=f"{plan.channel}@{period}",
                        limit=limit, period_seconds=period, token=token)
        label = f"frequency cap {category.key}/{plan.channel} {limit} per {period}s"
        if decision.allowed:
            plan.explain.append(f"{label}: {decision.count} of {limit}")
            continue
        if category.over_cap == OverCapPolicy.DEFER and decision.retry_at:
            # Never earlier than a quiet-hours deferral already decided.
            until = max(decision.retry_at, plan.next_attempt_at) if plan.next_attempt_at else decision.retry_at
            plan.status, plan.reason, plan.next_attempt_at = DeliveryStatus.PENDING, "frequency_capped", until
            plan.explain.append(f"{label}: reached; deferred until {until.isoformat()}")
        else:
            plan.status, plan.reason = DeliveryStatus.SKIPPED, "frequency_capped"
            plan.explain.append(f"{label}: reached")
            plan.explain.append("skipped: frequency_capped")
        return


def capped_recheck(deliveries) -> tuple[list, dict]:
    """Deliveries deferred by a frequency cap take their unit when they come due, not before:
    the cap is checked again at claim time, and one still over it waits for the next free unit.
    Returns the deliveries to send and ``{delivery id: Deferral}`` for the others."""
    from notifyhub.messaging.services.outcomes import Deferral

    ready, waiting = [], {}
    for delivery in deliveries:
        if delivery.reason != "frequency_capped":
            ready.append(delivery)
            continue
        category = delivery.message.template.category
        token = plan_token(message=delivery.message, recipient=delivery.recipient, channel=delivery.channel)
        refused = None
        for cap in category.frequency_caps or ():
            if cap.get("channel") not in (delivery.channel, "*"):
                continue
            period = int(cap["period"])
            decision = limits.frequency_cap_take(
                recipient_id=delivery.recipient_id, category=category.key, channel=f"{delivery.channel}@{period}",
                limit=int(cap["limit"]), period_seconds=period, token=token)
            if not decision.allowed:
                refused = decision
                break
        if refused is None:
            delivery.explain.append("frequency cap: a unit is free now")
            ready.append(delivery)
        else:
            until = refused.retry_at or (timezone.now() + timedelta(seconds=60))
            delivery.explain.append(f"frequency cap still reached; deferred until {until.isoformat()}")
            waiting[delivery.id] = Deferral(until=until, reason="frequency_capped",
                                            detail="frequency cap still reached")
    return ready, waiting
