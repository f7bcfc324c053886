"""May this recipient get this category on this channel?

The rule, in order: a critical category is always allowed; otherwise the most specific
preference wins — category × channel, then category (all channels), then channel (all
categories), then all × all — and with none, the category's default for the channel.
"""
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from preferences.models import Category, ContactPoint, Preference, QuietHoursPolicy, Recipient
from preferences.quiet_hours import QuietHours, quiet_hours_describe, quiet_until


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str  # "" when allowed, else a skip reason such as "opted_out"
    rule: str  # which rule decided, for explanations


def preference_decide(*, category: Category, channel: str, preferences: Iterable[Preference]) -> Decision:
    if category.critical:
        return Decision(True, "", f"category {category.key} is critical")
    table = {(p.category_id, p.channel): p.enabled for p in preferences}
    for key, rule in (
        ((category.id, channel), f"preference {category.key}/{channel}"),
        ((category.id, ""), f"preference {category.key}/all channels"),
        ((None, channel), f"preference all categories/{channel}"),
        ((None, ""), "preference all categories/all channels"),
    ):
        if key in table:
            enabled = table[key]
            return Decision(enabled, "" if enabled else "opted_out", rule)
    enabled = category.default_for(channel)
    return Decision(enabled, "" if enabled else "opted_out", f"category {category.key} default for {channel}")


def preferences_by_recipient(*, recipient_ids: Iterable[int]) -> dict[int, list[Preference]]:
    """All preferences of these recipients in one query."""
    grouped: dict[int, list[Preference]] = defaultdict(list)
    for preference in Preference.objects.filter(recipient_id__in=list(recipient_ids)):
        grouped[preference.recipient_id].append(preference)
    return grouped


def contact_points_by_recipient(*, recipient_ids: Iterable[int]) -> dict[int, dict[str, list[ContactPoint]]]:
    """Each recipient's contact points per kind, active first, then newest, in one query.

    The caller takes the first it can use; an inactive (suppressed or dead) point comes after
    every active one, so the caller can still tell "suppressed" from "no address".
    """
    grouped: dict[int, dict[str, list[ContactPoint]]] = defaultdict(lambda: defaultdict(list))
    points = ContactPoint.objects.filter(recipient_id__in=list(recipient_ids)).order_by("-active", "-id")
    for point in points:
        grouped[point.recipient_id][point.kind].append(point)
    return grouped


@dataclass(frozen=True, slots=True)
class QuietDecision:
    action: str  # "send", "defer" or "drop"
    until: datetime | None  # when the window ends, for "defer"
    rule: str  # for explanations


def quiet_hours_decide(*, category: Category, recipient: Recipient, at: datetime) -> QuietDecision:
    """What the recipient's quiet hours mean for a delivery of ``category`` due at ``at``."""
    if category.critical:
        return QuietDecision("send", None, f"quiet hours: category {category.key} is critical")
    if recipient.quiet_start is None or recipient.quiet_end is None:
        return QuietDecision("send", None, "")
    window = QuietHours(start=recipient.quiet_start, end=recipient.quiet_end)
    tz = recipient.timezone or ""
    try:
        until = quiet_until(window=window, tz=tz, now=at)
    except ValueError:  # a zone that has vanished from the tz database: judge in UTC
        tz = ""
        until = quiet_until(window=window, tz=tz, now=at)
    described = quiet_hours_describe(window=window, tz=tz)
    if until is None:
        return QuietDecision("send", None, f"outside {described}")
    policy = category.quiet_hours
    if policy == QuietHoursPolicy.IGNORE:
        return QuietDecision("send", None, f"inside {described}; category {category.key} ignores quiet hours")
    if policy == QuietHoursPolicy.DROP:
        return QuietDecision("drop", until, f"inside {described}; category {category.key} drops")
    return QuietDecision("defer", until, f"inside {described}; deferred until {until.isoformat()}")
