"""Writes on recipients, contact points and preferences.

``recipients_upsert`` handles one or ten thousand recipients with a constant number of
queries, so an API call with inline recipients costs the same per request, not per person.
"""
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import transaction
from django.utils import timezone

from preferences.models import Category, ContactPoint, Preference, Recipient

CONTACT_FIELDS = {"email": "email", "phone": "sms"}
PROFILE_FIELDS = ("name", "locale", "timezone", "data")


@dataclass
class RecipientInput:
    """Validated input for one recipient; ``None`` means "leave as it is"."""

    external_id: str
    name: str | None = None
    locale: str | None = None
    timezone: str | None = None
    data: dict | None = None
    contacts: dict[str, str] = field(default_factory=dict)  # kind -> normalised address
    quiet_hours: tuple | None = None  # (start, end) times; (None, None) clears them


@transaction.atomic
def recipients_upsert(*, items: Sequence[RecipientInput]) -> dict[str, Recipient]:
    """Create or update recipients and their primary contact point per kind.

    Race-safe and set-based: one ``INSERT … ON CONFLICT DO NOTHING`` for every id (in a stable
    order, so concurrent upserts lock rows in the same order), one ``SELECT`` that reads them
    back whoever inserted them, one ``UPDATE`` for the rows whose given fields differ, then
    the contact points the same way — the same handful of statements for one recipient or ten
    thousand, and ten concurrent requests naming the same new recipient all succeed.
    """
    by_id = {item.external_id: item for item in items}  # the last mention wins
    if not by_id:
        return {}
    ordered = sorted(by_id)
    Recipient.objects.bulk_create([_recipient_new(by_id[eid]) for eid in ordered], ignore_conflicts=True)
    rows = Recipient.objects.order_by().in_bulk(ordered, field_name="external_id")
    changed, now = [], timezone.now()
    for external_id in ordered:
        recipient, item = rows[external_id], by_id[external_id]
        dirty = False
        for name in PROFILE_FIELDS:
            value = getattr(item, name)
            if value is not None and getattr(recipient, name) != value:
                setattr(recipient, name, value)
                dirty = True
        if item.quiet_hours is not None and (recipient.quiet_start, recipient.quiet_end) != item.quiet_hours:
            recipient.quiet_start, recipient.quiet_end = item.quiet_hours
            dirty = True
        if dirty:
            recipient.updated_at = now
            changed.append(recipient)
    if changed:
        Recipient.objects.bulk_update(changed, [*PROFILE_FIELDS, "quiet_start", "quiet_end", "updated_at"])
    _contacts_set(recipients=rows, items=by_id)
    return rows


def _recipient_new(item: RecipientInput) -> Recipient:
    recipient = Recipient(external_id=item.external_id)
    for name in PROFILE_FIELDS:
        if getattr(item, name) is not None:
            setattr(recipient, name, getattr(item, name))
    if item.quiet_hours is not None:
        recipient.quiet_start, recipient.quiet_end = item.quiet_hours
    return recipient


def _contacts_set(*, recipients: dict[str, Recipient], items: dict[str, RecipientInput]) -> None:
    """Make each given address the recipient's contact point for its kind, keeping suppression.
    Inserts ignore conflicts: a concurrent upsert that added the same address is not an error."""
    wanted = {
        (recipients[eid].pk, kind): address
        for eid, item in items.items() for kind, address in item.contacts.items()
    }
    if not wanted:
        return
    current = ContactPoint.objects.filter(
        recipient_id__in={rid for rid, _ in wanted}, kind__in={kind for _, kind in wanted}
    ).order_by().values_list("pk", "recipient_id", "kind", "address")
    keep, stale = set(), []
    for pk, recipient_id, kind, address in current:
        want = wanted.get((recipient_id, kind))
        if want is None:
            continue
        if address == want:
            keep.add((recipient_id, kind))
        else:
            stale.append(pk)
    if stale:
        ContactPoint.objects.filter(pk__in=stale).delete()
    missing = sorted((rid, kind, address) for (rid, kind), address in wanted.items() if (rid, kind) not in keep)
    if missing:
        ContactPoint.objects.bulk_create(
            [ContactPoint(recipient_id=rid, kind=kind, address=address) for rid, kind, address in missing],
            ignore_conflicts=True,
        )


def recipient_delete(*, recipient: Recipient) -> None:
    recipient.delete()


@dataclass(frozen=True)
class PreferenceInput:
    category: Category | None
    channel: str  # "" for every channel
    enabled: bool


@transaction.atomic
def preferences_replace(*, recipient: Recipient, preferences: Sequence[PreferenceInput]) -> list[Preference]:
    """Replace all of a recipient's preferences with ``preferences``."""
    Preference.objects.filter(recipient=recipient).delete()
    unique = {(p.category.pk if p.category else None, p.channel): p for p in preferences}
    return Preference.objects.bulk_create(
        [Preference(recipient=recipient, category=p.category, channel=p.channel, enabled=p.enabled)
         for p in unique.values()]
    )


def contact_point_deactivate(*, kind: str, address: str, reason: str, recipient_id: int | None = None) -> int:
    """Stop using an address: a hard bounce, a spam complaint, an unregistered device token.

    Without ``recipient_id`` every recipient's point with that address goes (a bounced mailbox
    is bad for everyone who shares it). Operators reverse it in the admin ("reactivate").
    """
    points = ContactPoint.objects.filter(kind=kind, address=address, active=True)
    if recipient_id is not None:
        points = points.filter(recipient_id=recipient_id)
    return points.update(active=False, deactivated_reason=reason[:200])


def contact_point_add(*, recipient: Recipient, kind: str, address: str, app: str = "",
                      label: str = "") -> tuple[ContactPoint, bool]:
    """Add one address (e.g. a new device token), keeping the others; ``(point, created)``.

    Adding an address that exists updates its app and label when given, but does not undo a
    deactivation: a bounced mailbox or an unregistered token is reactivated by an operator in
    the admin, not by the system that registered it.
    """
    point, created = ContactPoint.objects.get_or_create(
        recipient=recipient, kind=kind, address=address, defaults={"app": app, "label": label},
    )
    if not created:
        changed = {name: value for name, value in (("app", app), ("label", label))
                   if value and getattr(point, name) != value}
        for name, value in changed.items():
            setattr(point, name, value)
        if changed:
            point.save(update_fields=list(changed))
    return point, created


def contact_point_remove(*, point: ContactPoint) -> None:
    point.delete()
