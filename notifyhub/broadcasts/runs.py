"""Broadcasts: schedules kept as django-celery-beat rows, and runs that resolve the audience at
run time into one Message through messaging's normal chunked dispatch.

The audience is written as the message's ``MessageRecipient`` rows with one ``INSERT … SELECT``
from the audience query, so a run of 100,000 recipients costs the same statements as a run of 10
and is not bound by the 10,000-recipient limit of one API call.
"""
import json
import zoneinfo
from functools import partial

from celery import current_app
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask

from notifyhub.broadcasts.models import (
    Broadcast,
    BroadcastRun,
    BroadcastStatus,
    ScheduleKind,
    Subscription,
)
from notifyhub.broadcasts.segments import segment_q
from notifyhub.messaging.models import Message, MessageRecipient, MessageStatus
from notifyhub.messaging.queueing import dispatch_enqueue
from notifyhub.messaging.services.accept import MessageRejected, context_check, message_accept
from notifyhub.messaging.services.cancel import FINAL_MESSAGE, message_cancel
from preferences.models import Recipient

RUN_TASK = "notifyhub.broadcast_run"
BEAT_PREFIX = "notifyhub-broadcast-"
RUNNABLE = (BroadcastStatus.SCHEDULED, BroadcastStatus.RUNNING, BroadcastStatus.COMPLETED)


def broadcast_audience(*, broadcast: Broadcast) -> QuerySet[Recipient]:
    """The recipients of the broadcast now: all, or the union of its topics and its segment."""
    if broadcast.all_recipients:
        return Recipient.objects.all()
    parts = []
    topic_ids = list(broadcast.topics.values_list("pk", flat=True))
    if topic_ids:
        parts.append(Q(Exists(Subscription.objects.filter(recipient=OuterRef("pk"), topic_id__in=topic_ids))))
    if broadcast.segment_id:
        parts.append(segment_q(definition=broadcast.segment.definition))
    if not parts:
        return Recipient.objects.none()
    q = parts[0]
    for part in parts[1:]:
        q |= part
    return Recipient.objects.filter(q)


def broadcast_check(*, broadcast: Broadcast) -> None:
    """Raise ValidationError (by field) for a broadcast that cannot be scheduled."""
    errors: dict[str, list[str]] = {}
    if not broadcast.all_recipients and not broadcast.segment_id and (
            broadcast.pk is None or not broadcast.topics.exists()):
        errors["audience"] = ["Choose topics, a segment, or all recipients."]
    if broadcast.timezone not in zoneinfo.available_timezones():
        errors["timezone"] = [f"{broadcast.timezone!r} is not an IANA time zone name."]
    if broadcast.schedule == ScheduleKind.ONCE and broadcast.send_at is None:
        errors["send_at"] = ["A broadcast sent once needs send_at."]
    if broadcast.schedule == ScheduleKind.CRON and len(broadcast.cron.split()) != 5:
        errors["cron"] = ["Five fields: minute hour day-of-month month day-of-week, e.g. 0 10 * * 1."]
    if broadcast.schedule == ScheduleKind.INTERVAL and not (broadcast.interval_every and broadcast.interval_unit):
        errors["interval_every"] = ["Every how many minutes, hours or days."]
    try:
        context_check(template=broadcast.template, context=broadcast.context)
    except MessageRejected as exc:
        errors.update({key: value if isinstance(value, list) else [str(value)] for key, value in exc.errors.items()})
    if errors:
        raise ValidationError(errors)


def _beat_schedule(broadcast: Broadcast) -> dict:
    if broadcast.schedule == ScheduleKind.CRON:
        minute, hour, day, month, weekday = broadcast.cron.split()
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=minute, hour=hour, day_of_month=day, month_of_year=month, day_of_week=weekday,
            timezone=broadcast.timezone)
        return {"crontab": crontab, "interval": None, "clocked": None, "one_off": False}
    if broadcast.schedule == ScheduleKind.INTERVAL:
        interval, _ = IntervalSchedule.objects.get_or_create(every=broadcast.interval_every,
                                                            period=broadcast.interval_unit)
        return {"crontab": None, "interval": interval, "clocked": None, "one_off": False}
    clocked, _ = ClockedSchedule.objects.get_or_create(clocked_time=broadcast.send_at)
    return {"crontab": None, "interval": None, "clocked": clocked, "one_off": True}


@transaction.atomic
def broadcast_schedule(*, broadcast: Broadcast) -> Broadcast:
    """Check the broadcast and put it on its schedule: now (one run on commit), or a beat entry."""
    broadcast_check(broadcast=broadcast)
    broadcast.status = BroadcastStatus.SCHEDULED
    broadcast.save()
    if broadcast.schedule == ScheduleKind.NOW:
        _periodic_task_remove(broadcast)
        transaction.on_commit(partial(current_app.send_task, RUN_TASK, args=[broadcast.pk]))
        return broadcast
    fields = {**_beat_schedule(broadcast), "task": RUN_TASK, "args": json.dumps([broadcast.pk]),
              "enabled": True, "start_time": broadcast.starts_at, "expires": broadcast.ends_at,
              "description": f"Broadcast {broadcast.pk}: {broadcast.name} (managed by notifyhub; edit the broadcast)"}
    task = broadcast.periodic_task
    if task is None:
        task = PeriodicTask.objects.create(name=f"{BEAT_PREFIX}{broadcast.pk}", **fields)
        broadcast.periodic_task = task
        broadcast.save(update_fields=["periodic_task", "updated_at"])
    else:
        for name, value in fields.items():
            setattr(task, name, value)
        task.save()
    return broadcast


def _periodic_task_remove(broadcast: Broadcast) -> None:
    if broadcast.periodic_task_id:
        PeriodicTask.objects.get(pk=broadcast.periodic_task_id).delete()  # the model's delete tells beat
        broadcast.periodic_task = None
        broadcast.save(update_fields=["periodic_task", "updated_at"])


def _periodic_task_enable(broadcast: Broadcast, enabled: bool) -> None:
    """Saved through the model, so beat's DatabaseScheduler sees the change (a queryset update would not)."""
    task = PeriodicTask.objects.filter(pk=broadcast.periodic_task_id).first()
    if task is not None and task.enabled != enabled:
        task.enabled = enabled
        task.save(update_fields=["enabled"])


@transaction.atomic
def broadcast_pause(*, broadcast: Broadcast) -> Broadcast:
    """No further runs until resumed (the beat entry is disabled)."""
    _periodic_task_enable(broadcast, False)
    broadcast.status = BroadcastStatus.PAUSED
    broadcast.save(update_fields=["status", "updated_at"])
    return broadcast


@transaction.atomic
def broadcast_resume(*, broadcast: Broadcast) -> Broadcast:
    _periodic_task_enable(broadcast, True)
    broadcast.status = BroadcastStatus.SCHEDULED
    broadcast.save(update_fields=["status", "updated_at"])
    return broadcast


def broadcast_cancel(*, broadcast: Broadcast) -> int:
    """No further runs, and what is unsent of the runs in progress is cancelled; how many deliveries."""
    with transaction.atomic():
        _periodic_task_remove(broadcast)
        broadcast.status = BroadcastStatus.CANCELLED
        broadcast.save(update_fields=["status", "updated_at"])
    open_messages = Message.objects.filter(pk__in=broadcast.runs.values("message_id")).exclude(
        status__in=(*FINAL_MESSAGE, MessageStatus.CANCELLED))
    return sum(message_cancel(message=message) for message in open_messages)


@transaction.atomic
def broadcast_delete(*, broadcast: Broadcast) -> None:
    """Delete the broadcast and its beat entry."""
    _periodic_task_remove(broadcast)
    broadcast.delete()


def broadcast_run(*, broadcast_id: int) -> BroadcastRun | None:
    """One run: resolve the audience now and accept it as one Message (dispatched in chunks)."""
    with transaction.atomic():
        broadcast = (Broadcast.objects.select_for_update(of=("self",)).select_related("template", "segment")
                     .filter(pk=broadcast_id, status__in=RUNNABLE).first())
        if broadcast is None:  # paused, cancelled, deleted, or still a draft
            return None
        message = Message.objects.create(
            template=broadcast.template, context=broadcast.context, channels=list(broadcast.channels),
            priority=broadcast.priority, api_key=broadcast.api_key, status=MessageStatus.ACCEPTED)
        count = _audience_write(message=message, audience=broadcast_audience(broadcast=broadcast))
        Message.objects.filter(pk=message.pk).update(recipient_count=count)
        run = BroadcastRun.objects.create(broadcast=broadcast, message=message, recipient_count=count)
        once = broadcast.schedule in (ScheduleKind.NOW, ScheduleKind.ONCE)
        broadcast.status = BroadcastStatus.RUNNING if once else BroadcastStatus.SCHEDULED
        broadcast.save(update_fields=["status", "updated_at"])
        dispatch_enqueue(message_id=message.pk)
    return run




def _audience_write(*, message: Message, audience: QuerySet[Recipient]) -> int:
    """The audience as the message's recipients, in one ``INSERT … SELECT``; how many."""
    ids = audience.order_by().values("pk")
    if connection.vendor != "postgresql":  # SQLite, the embedded default
        rows = MessageRecipient.objects.bulk_create(
            [MessageRecipient(message=message, recipient_id=pk) for pk in ids.values_list("pk", flat=True)])
        return len(rows)
    sql, params = ids.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {MessageRecipient._meta.db_table} (message_id, recipient_id) "  # noqa: S608 — our table
            f"SELECT %s, audience.recipient_id FROM ({sql}) AS audience(recipient_id)", [message.pk, *params])
        return cursor.rowcount


def broadcast_test_send(*, broadcast: Broadcast, external_id: str) -> Message:
    """Send the broadcast to one chosen recipient now, through the normal accept path; the broadcast's
    state and schedule do not change and no run is recorded."""
    return message_accept(api_key=broadcast.api_key, template=broadcast.template, to=[external_id],
                          context=broadcast.context, channels=list(broadcast.channels), priority=broadcast.priority)
