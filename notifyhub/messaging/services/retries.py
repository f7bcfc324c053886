"""The retry policy: how long a failed attempt waits, and what waiting without an attempt means."""
import random
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings


def retry_delay(*, attempt: int, retry_after: float | None = None) -> float:
    """Exponential backoff with jitter: attempt n waits between base·2^(n-1)/2 and base·2^(n-1).

    The ranges of successive attempts do not overlap, so delays always grow; the provider's
    ``Retry-After`` is honoured when it asks for longer; the cap bounds the wait.
    """
    ceiling = settings.NOTIFYHUB_RETRY_BASE_SECONDS * 2 ** (attempt - 1)
    delay = random.uniform(ceiling / 2, ceiling)
    if retry_after:
        delay = max(delay, retry_after)
    return min(delay, settings.NOTIFYHUB_RETRY_MAX_SECONDS)


@dataclass(frozen=True, slots=True)
class Deferral:
    """Not sent and not an attempt: wait for a rate-limit slot, a closed breaker or a cap unit.

    A deferral writes no event and keeps one ``explain`` line, rewritten each time, saying how
    often the delivery was deferred and until when: a delivery that waits for many cycles does
    not grow its timeline.
    """

    until: datetime
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Cancelled:
    """Not sent: its message was cancelled after the claim and before the send."""

    detail: str = "message cancelled"


def deferral_note(explain: list[str], deferral: Deferral) -> None:
    """Rewrite the one ``deferred …`` line of ``explain`` in place (count and latest due time)."""
    count = 1
    for index in range(len(explain) - 1, -1, -1):
        line = explain[index]
        if line.startswith("deferred "):
            try:
                count = int(line.split(" ", 2)[1].rstrip("×")) + 1
            except (IndexError, ValueError):
                count = 1
            del explain[index]
            break
    explain.append(f"deferred {count}× ({deferral.reason}: {deferral.detail}); latest until "
                   f"{deferral.until.isoformat(timespec='seconds')}")
