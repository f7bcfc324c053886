"""May this recipient get this category on this channel?

The rule, in order: a critical category is always allowed; otherwise the most specific
preference wins — category × channel, then category (all channels), then channel (all
categories), then all × all — and with none, the category's default for the channel.
"""
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from preferences.models import Category, ContactPoint, Preference


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


def contact_points_by_recipient(*, recipient_ids: Iterable[int]) -> dict[int, dict[str, ContactPoint]]:
    """Each recipient's best contact point per kind (active first, then newest), in one query.

    An inactive (suppressed or dead) point is returned only when no active one exists, so the
    caller can tell "suppressed" from "no address".
    """
    best: dict[int, dict[str, ContactPoint]] = defaultdict(dict)
    points = ContactPoint.objects.filter(recipient_id__in=list(recipient_ids)).order_by("-active", "-id")
    for point in points:
        best[point.recipient_id].setdefault(point.kind, point)
    return best
