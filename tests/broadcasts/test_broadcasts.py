"""Broadcasts: beat entries owned by notifyhub, and runs that resolve the audience at run time into
one Message through the normal chunked dispatch."""
import json
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from notifyhub.broadcasts.models import Broadcast, BroadcastRun, BroadcastStatus, Segment, Subscription, Topic
from notifyhub.broadcasts.runs import (
    broadcast_cancel,
    broadcast_delete,
    broadcast_pause,
    broadcast_resume,
    broadcast_run,
    broadcast_schedule,
)
from notifyhub.messaging.models import Delivery, DeliveryStatus, Message, MessageRecipient
from preferences.models import Recipient
from tests import factories
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db
CONTEXT = {"name": "all", "code": "42"}


def subscribe(topic, *recipients):
    Subscription.objects.bulk_create([Subscription(topic=topic, recipient=r) for r in recipients])


@pytest.fixture
def topic(db):
    return Topic.objects.create(key="news", name="News")


def broadcast(topic=None, **kw) -> Broadcast:
    b = Broadcast.objects.create(**{"name": "Weekly", "template": factories.template(), "context": CONTEXT, **kw})
    if topic is not None:
        b.topics.add(topic)
    return b


def test_recurring_schedule_is_a_beat_entry_notifyhub_creates_changes_pauses_and_removes(topic):
    b = broadcast(topic, schedule="cron", cron="0 10 * * 1", timezone="Asia/Shanghai")
    broadcast_schedule(broadcast=b)
    task = PeriodicTask.objects.get(name=f"notifyhub-broadcast-{b.pk}")
    assert (task.task, json.loads(task.args), task.enabled) == ("notifyhub.broadcast_run", [b.pk], True)
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week, str(task.crontab.timezone)) == (
        "0", "10", "1", "Asia/Shanghai")
    b.schedule, b.interval_every, b.interval_unit = "interval", 15, "minutes"
    broadcast_schedule(broadcast=b)
    task.refresh_from_db()
    assert task.crontab is None and (task.interval.every, task.interval.period) == (15, "minutes")
    assert PeriodicTask.objects.filter(name__startswith="notifyhub-broadcast-").count() == 1
    broadcast_pause(broadcast=b)
    task.refresh_from_db()
    assert not task.enabled and b.status == BroadcastStatus.PAUSED
    assert broadcast_run(broadcast_id=b.pk) is None  # a tick while paused sends nothing
    broadcast_resume(broadcast=b)
    task.refresh_from_db()
    assert task.enabled
    broadcast_delete(broadcast=b)
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()


def test_once_is_a_one_off_clocked_entry(topic):
    at = timezone.now() + timedelta(hours=2)
    b = broadcast(topic, schedule="once", send_at=at)
    broadcast_schedule(broadcast=b)
    task = b.periodic_task
    assert task.one_off and task.clocked.clocked_time == at
    broadcast_cancel(broadcast=b)
    assert not PeriodicTask.objects.exists() and b.status == BroadcastStatus.CANCELLED
    assert broadcast_run(broadcast_id=b.pk) is None


@pytest.mark.parametrize("changes, field", [
    ({}, "audience"),
    ({"context": {"name": "x"}}, "context"),
    ({"schedule": "cron", "cron": "every monday"}, "cron"),
    ({"schedule": "once"}, "send_at"),
    ({"schedule": "interval"}, "interval_every"),
    ({"timezone": "Mars/Base"}, "timezone"),
])
def test_a_broadcast_that_cannot_run_is_refused_by_field(topic, changes, field):
    b = broadcast(None if field == "audience" else topic, **changes)
    with pytest.raises(ValidationError) as info:
        broadcast_schedule(broadcast=b)
    assert field in info.value.message_dict
    assert not PeriodicTask.objects.exists() and Broadcast.objects.get().status == BroadcastStatus.DRAFT


def test_each_run_is_a_message_with_the_audience_as_it_is_then(topic):
    a, b_, late = factories.recipient(), factories.recipient(), factories.recipient()
    subscribe(topic, a, b_)
    factories.recipient(locale="fr")
    segment = Segment.objects.create(key="fr", name="French", definition={"field": "locale", "op": "=",
                                                                          "value": "fr"})
    b = broadcast(topic, schedule="interval", interval_every=1, interval_unit="minutes", segment=segment)
    broadcast_schedule(broadcast=b)
    first = broadcast_run(broadcast_id=b.pk)
    subscribe(topic, late)
    second = broadcast_run(broadcast_id=b.pk)
    assert first.message_id != second.message_id
    assert (first.recipient_count, second.recipient_count) == (3, 4)  # topic ∪ segment, no one twice
    audience = set(MessageRecipient.objects.filter(message=second.message).values_list("recipient_id", flat=True))
    assert late.pk in audience and late.pk not in set(
        MessageRecipient.objects.filter(message=first.message).values_list("recipient_id", flat=True))
    assert Message.objects.get(pk=second.message_id).recipient_count == 4
    assert BroadcastRun.objects.filter(broadcast=b).count() == 2


@pytest.mark.services
def test_a_run_costs_the_same_statements_for_10_or_3000_recipients(topic):
    def run(n, tag):
        Recipient.objects.bulk_create([Recipient(external_id=f"{tag}{i}") for i in range(n)])
        t = Topic.objects.create(key=tag, name=tag)
        subscribe(t, *Recipient.objects.filter(external_id__startswith=tag))
        b = broadcast(t)
        broadcast_schedule(broadcast=b)
        with CaptureQueriesContext(connection) as queries:
            assert broadcast_run(broadcast_id=b.pk).recipient_count == n
        return len(queries)

    assert run(10, "s") == run(3000, "l")


@pytest.mark.services
def test_a_broadcast_sent_now_reaches_every_subscriber_once_through_the_pipeline(start_worker, topic):
    factories.inapp_channel()
    recipients = [factories.recipient() for _ in range(30)]
    subscribe(topic, *recipients)
    b = broadcast(topic, channels=["inapp"])
    start_worker(concurrency=2)
    broadcast_schedule(broadcast=b)
    wait_until(lambda: Delivery.objects.filter(status=DeliveryStatus.SENT).count() == 30, timeout=90,
               message="30 in-app deliveries sent")
    run = BroadcastRun.objects.get(broadcast=b)
    assert run.recipient_count == 30
    assert sorted(Delivery.objects.filter(message_id=run.message_id).values_list("recipient_id", flat=True)) == sorted(
        r.pk for r in recipients)
