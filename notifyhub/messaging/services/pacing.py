"""Pacing a batch to an account's rate limit without holding the worker.

Each send reserves the account's next slot in Redis (shared by every worker). A batch sleeps for
near slots but never more than ``MAX_SLOT_WAIT`` seconds in all; the deliveries it cannot send
within that are deferred with staggered due times, one slot apart, so they come back one per
slot through the due-time dispatcher instead of all at once, and the worker is free for other
accounts of the same channel kind meanwhile.
"""
import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from channels_app.ratelimit import Rate, slot_reserve
from notifyhub.messaging.services.batch import send_group
from notifyhub.messaging.services.retries import Deferral

#: The most a batch sleeps for rate-limit slots, in all.
MAX_SLOT_WAIT = 2.0
#: Slots this close are sent together (well inside the rate limit's margin): a high rate such
#: as FCM's 600000/m keeps concurrent sends instead of one request per 0.1 ms slot.
SLOT_GROUP_SECONDS = 0.01


def paced_outcomes(*, backend, rate: Rate | None, key: str, label: str, deliveries: list):
    """Yield ``(delivery id, outcome)``; with a rate, in reserved slots, deferring the rest."""
    if rate is None:
        yield from send_group(backend, deliveries)
        return
    ready: list = []  # slots due now: sent together, concurrently
    slept = 0.0
    for index, delivery in enumerate(deliveries):
        budget = max(MAX_SLOT_WAIT - slept, 0.0)
        wait = slot_reserve(key, rate, max_wait=budget)
        if wait > budget:
            yield from send_group(backend, ready)
            yield from _defer(deliveries[index:], rate=rate, wait=wait, label=label)
            return
        if wait > SLOT_GROUP_SECONDS:
            due = time.monotonic() + wait
            yield from send_group(backend, ready)
            ready = []
            pause = max(0.0, due - time.monotonic())
            time.sleep(pause)  # the slot, not the slot plus the sends before
            slept += pause
        ready.append(delivery)
    yield from send_group(backend, ready)


def _defer(deliveries: list, *, rate: Rate, wait: float, label: str):
    """One deferral per delivery, one slot apart from the next free slot on."""
    margin = float(getattr(settings, "NOTIFYHUB_RATE_LIMIT_MARGIN", 0.05))
    spacing = float(rate.period_seconds) / rate.count * (1 + margin)
    first = timezone.now() + timedelta(seconds=wait)
    for position, delivery in enumerate(deliveries):
        until = first + timedelta(seconds=position * spacing)
        yield str(delivery.id), Deferral(until=until, reason="rate_limited", detail=f"rate limit {rate} on {label}")
