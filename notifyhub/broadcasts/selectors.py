"""Reads on audiences."""
from django.db.models import Count, QuerySet

from notifyhub.broadcasts.models import Segment, Subscription, Topic
from notifyhub.broadcasts.segments import segment_q
from preferences.models import Recipient

PREVIEW_SAMPLE = 10


def topics_with_counts() -> QuerySet[Topic]:
    return Topic.objects.select_related("default_category").annotate(
        subscriber_count=Count("subscriptions")).order_by("key")


def topic_subscriptions(*, topic: Topic) -> QuerySet[Subscription]:
    return Subscription.objects.filter(topic=topic).select_related("recipient")


def segment_recipients(*, definition) -> QuerySet[Recipient]:
    """The recipients a definition matches: one query."""
    return Recipient.objects.filter(segment_q(definition=definition))


def segment_preview(*, segment: Segment | None = None, definition=None) -> tuple[int, list[Recipient]]:
    """Audience size and the first ten recipients (by external id)."""
    recipients = segment_recipients(definition=segment.definition if segment is not None else definition)
    count = recipients.order_by().count()
    return count, list(recipients.order_by("external_id")[:PREVIEW_SAMPLE])
