"""The smart-delivery rules a planned delivery passes after preferences and address.

In order: quiet hours (defer, drop or ignore, per category; critical categories ignore them),
deduplication (same template, recipient, channel and rendered content within the template's
window), then frequency caps (per category and channel, per recipient, per rolling period).
Dedup and caps keep their counters in Redis, so they are exact across workers; both are keyed
by a token stable for one message × recipient × channel, so a repeated dispatch of the same
chunk counts nothing twice. ``reserve=False`` (dry runs) only looks.

What a plan reserves is given back whenever the delivery does not go out after all: a later
rule refuses it (a cap after the dedup window, a second cap after the first), the plan fails,
the message is cancelled, or the transaction that wrote the plan rolls back
(:func:`reservations_guard`).
"""
import contextvars
import logging
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.utils import timezone

from notifyhub.messaging import limits
from notifyhub.messaging.models import DeliveryStatus, Message
from notifyhub.messaging.services.retries import Deferral
from preferences.models import Category, OverCapPolicy, Recipient
from preferences.selectors import quiet_hours_decide

logger = logging.getLogger(__name__)
_ledger: contextvars.ContextVar[list | None] = contextvars.ContextVar("notifyhub_reservations", default=None)


def _reserved(plan, release) -> None:
    """Remember how to give back what ``plan`` just reserved (on the plan and the open ledger)."""
    plan.reservations.append(release)
    ledger = _ledger.get()
    if ledger is not None:
        ledger.append(release)


def reservations_release(releases) -> None:
    """Give back dedup windows and cap units; Redis trouble is logged, never raised."""
    for release in releases:
        try:
            release()
        except Exception:
            logger.exception("Giving back a dedup or cap reservation failed")


@contextmanager
def reservations_guard():
    """Give back everything reserved inside the block if the block raises.

    Put it *outside* the ``transaction.atomic()`` that writes the plans, so an exception that
    rolls the plans back also returns their dedup windows and cap units.
    """
    outer = _ledger.get()
    ledger: list = []
    token = _ledger.set(ledger)
    try:
        yield ledger
    except BaseException:
        reservations_release(ledger)
        raise
    else:
        if outer is not None:  # nested: the enclosing block may still roll back
            outer.extend(ledger)
    finally:
        _ledger.reset(token)


def plan_release(plan) -> None:
    """The plan will not be sent: give back what it reserved."""
    reservations_release(plan.reservations)
    plan.reservations.clear()


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
        if not earlier:
            _reserved(plan, lambda f=fingerprint, t=token: limits.duplicate_forget(fingerprint=f, token=t))
    else:
        earlier = limits.duplicate_peek(fingerprint=fingerprint, token=token)
    if earlier:
        plan.status, plan.reason = DeliveryStatus.SKIPPED, "duplicate"
        plan.explain.append(f"dedup: same content sent within {window}s (message {earlier.split(':')[0]})")
        plan.explain.append("skipped: duplicate")
    else:
        plan.explain.append(f"dedup: first of this content within {window}s")


def frequency_cap_apply(plan, *, message: Message, category: Category, reserve: bool) -> None:
    caps = _caps_for(category, plan.channel)
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
            if reserve:
                _reserved(plan, lambda r=plan.recipient.pk, k=category.key, c=f"{plan.channel}@{period}", t=token:
                          limits.frequency_cap_release(recipient_id=r, category=k, channel=c, token=t))
            continue
        # Refused: the units taken under earlier caps and the dedup window go back, for a later send.
        plan_release(plan)
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
    ready, waiting = [], {}
    for delivery in deliveries:
        if delivery.reason != "frequency_capped":
            ready.append(delivery)
            continue
        category = delivery.message.template.category
        token = plan_token(message=delivery.message, recipient=delivery.recipient, channel=delivery.channel)
        refused, taken = None, []
        for cap in _caps_for(category, delivery.channel):
            period = int(cap["period"])
            channel = f"{delivery.channel}@{period}"
            decision = limits.frequency_cap_take(
                recipient_id=delivery.recipient_id, category=category.key, channel=channel,
                limit=int(cap["limit"]), period_seconds=period, token=token)
            if not decision.allowed:
                refused = decision
                break
            taken.append(channel)
        if refused is None:
            delivery.explain.append("frequency cap: a unit is free now")
            ready.append(delivery)
            continue
        for channel in taken:  # the units of the caps that allowed it wait with the delivery
            limits.frequency_cap_release(recipient_id=delivery.recipient_id, category=category.key,
                                         channel=channel, token=token)
        until = refused.retry_at or (timezone.now() + timedelta(seconds=60))
        waiting[delivery.id] = Deferral(until=until, reason="frequency_capped", detail="frequency cap still reached")
    return ready, waiting


def _caps_for(category: Category, channel: str) -> list[dict]:
    return [cap for cap in category.frequency_caps or () if cap.get("channel") in (channel, "*")]


def deliveries_reservations_release(deliveries) -> None:
    """Give back the dedup windows and cap units of deliveries that will not be sent (cancelled).

    ``deliveries`` are rows with ``message__template__category`` loaded; Redis trouble is logged.
    """
    releases = []
    for delivery in deliveries:
        template = delivery.message.template
        token = f"{delivery.message_id}:{delivery.recipient_id}:{delivery.channel}"
        if template.dedup_window_seconds and delivery.content:
            fingerprint = limits.content_fingerprint(template.key, delivery.recipient_id, delivery.channel,
                                                     delivery.content)
            releases.append(lambda f=fingerprint, t=token: limits.duplicate_forget(fingerprint=f, token=t))
        for cap in _caps_for(template.category, delivery.channel):
            releases.append(lambda r=delivery.recipient_id, k=template.category.key, t=token,
                            c=f"{delivery.channel}@{int(cap['period'])}":
                            limits.frequency_cap_release(recipient_id=r, category=k, channel=c, token=t))
    reservations_release(releases)
