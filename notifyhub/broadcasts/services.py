"""Writes on audiences: topic subscriptions, segments, CSV imports.

Every write that takes a list of recipients costs a constant number of statements, whatever the
length of the list (set-based SQL: ``unnest`` arrays on PostgreSQL, one multi-row statement
elsewhere).
"""
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.core.files.base import ContentFile, File
from django.db import connection, transaction

from notifyhub.broadcasts.models import Import, Subscription, Topic
from notifyhub.broadcasts.tasks import import_recipients
from preferences.models import Recipient
from preferences.services import RecipientInput, recipients_upsert


class AudienceRejected(Exception):
    """The request cannot be applied; ``errors`` maps fields to messages, like a serializer."""

    def __init__(self, errors: dict):
        super().__init__(errors)
        self.errors = errors


@dataclass
class SubscribersChange:
    """What an add or remove call did: counts, and unknown external ids by position."""

    added: int = 0
    removed: int = 0
    already: int = 0
    unknown: dict[int, str] = field(default_factory=dict)


def _external_id(item: str | RecipientInput) -> str:
    return item if isinstance(item, str) else item.external_id


@transaction.atomic
def topic_subscribers_add(*, topic: Topic, items: Sequence[str | RecipientInput]) -> SubscribersChange:
    """Subscribe recipients (external ids, or inline recipients upserted on the way).

    Idempotent: a recipient already subscribed stays subscribed once. An unknown bare external id
    rejects the whole call by position (``{"recipients": {"3": [...]}}``) and writes nothing.
    """
    bare = list({item for item in items if isinstance(item, str)})
    known = dict(Recipient.objects.filter(external_id__in=bare).values_list("external_id", "pk")) if bare else {}
    unknown = {
        str(index): [f"Unknown recipient {item!r}; send an object with contact details to create it."]
        for index, item in enumerate(items) if isinstance(item, str) and item not in known
    }
    if unknown:
        raise AudienceRejected({"recipients": unknown})
    inline = [item for item in items if isinstance(item, RecipientInput)]
    if inline:
        known.update({eid: r.pk for eid, r in recipients_upsert(items=inline).items()})
    ids = sorted({known[_external_id(item)] for item in items})
    added = _subscriptions_insert(topic_id=topic.pk, recipient_ids=ids)
    return SubscribersChange(added=added, already=len(ids) - added)


def _subscriptions_insert(*, topic_id: int, recipient_ids: Sequence[int]) -> int:
    """Insert the missing (topic, recipient) pairs in one statement; the number inserted."""
    if not recipient_ids:
        return 0
    table = Subscription._meta.db_table
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (topic_id, recipient_id, created_at) "  # noqa: S608 — table name is ours
                "SELECT %s, r, now() FROM unnest(%s::bigint[]) AS r ON CONFLICT DO NOTHING",
                [topic_id, list(recipient_ids)],
            )
            return cursor.rowcount
    before = Subscription.objects.filter(topic_id=topic_id).count()
    Subscription.objects.bulk_create([Subscription(topic_id=topic_id, recipient_id=rid) for rid in recipient_ids],
                                     ignore_conflicts=True)
    return Subscription.objects.filter(topic_id=topic_id).count() - before


@transaction.atomic
def topic_subscribers_remove(*, topic: Topic, external_ids: Sequence[str]) -> SubscribersChange:
    """Unsubscribe recipients by external id; unknown ids are reported by position, not an error."""
    wanted = list(set(external_ids))
    known = set(Recipient.objects.filter(external_id__in=wanted).values_list("external_id", flat=True))
    removed, _ = Subscription.objects.filter(topic=topic, recipient__external_id__in=wanted).delete()
    unknown = {index: eid for index, eid in enumerate(external_ids) if eid not in known}
    return SubscribersChange(removed=removed, unknown=unknown)



def import_create(*, upload: File, original_name: str = "", api_key=None) -> Import:
    """Store an uploaded CSV file and queue the task that reads it (on commit)."""
    name = (original_name or getattr(upload, "name", "") or "recipients.csv").rsplit("/", 1)[-1]
    record = Import(original_name=name[:255], api_key=api_key)
    record.file.save(name[-100:], upload, save=False)
    record.size_bytes = record.file.size
    record.save()
    transaction.on_commit(lambda: import_recipients.delay(record.pk))
    return record


def import_create_from_text(*, text: str, original_name: str = "", api_key=None) -> Import:
    """The same for CSV sent as text (the JSON form of ``POST /imports``)."""
    return import_create(upload=ContentFile(text.encode("utf-8")), original_name=original_name or "recipients.csv",
                         api_key=api_key)
