"""A recurring broadcast driven by a real beat (DatabaseScheduler) and a real worker: one run per
tick, each with the audience of that tick; pause stops the next tick; delete removes the entry."""
import os
import signal
import subprocess
import sys
import time

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from notifyhub.broadcasts.models import Broadcast, BroadcastRun, Subscription, Topic
from notifyhub.broadcasts.runs import broadcast_delete, broadcast_pause, broadcast_schedule
from notifyhub.messaging.models import Delivery, DeliveryStatus, MessageRecipient
from tests import factories
from tests.conftest import ROOT, wait_until, worker_env

pytestmark = [pytest.mark.services, pytest.mark.timeout(420)]


@pytest.fixture
def beat(start_worker, tmp_path):
    log = open(tmp_path / "beat.log", "w")  # noqa: SIM115 — closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "notifyhub", "beat", "--loglevel", "INFO", "--max-interval", "1",
         "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"],
        cwd=ROOT, env=worker_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    yield proc
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:  # beat can sit in a database call; it holds nothing worth a clean exit
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    log.close()


def test_every_minute_two_ticks_then_pause_then_delete(start_worker, beat):
    factories.inapp_channel()
    topic = Topic.objects.create(key="news", name="News")
    first = factories.recipient()
    Subscription.objects.create(topic=topic, recipient=first)
    b = Broadcast.objects.create(name="Every minute", template=factories.template(), channels=["inapp"],
                                 context={"name": "all", "code": "1"}, schedule="cron", cron="* * * * *",
                                 timezone="UTC")
    b.topics.add(topic)
    start_worker(beat=False, concurrency=2)
    broadcast_schedule(broadcast=b)
    wait_until(lambda: BroadcastRun.objects.filter(broadcast=b).count() == 1, timeout=90, message="first tick")
    late = factories.recipient()
    Subscription.objects.create(topic=topic, recipient=late)
    wait_until(lambda: BroadcastRun.objects.filter(broadcast=b).count() == 2, timeout=90, message="second tick")
    runs = list(BroadcastRun.objects.filter(broadcast=b).order_by("started_at"))
    assert [r.recipient_count for r in runs] == [1, 2] and runs[0].message_id != runs[1].message_id
    assert runs[1].started_at.replace(second=0, microsecond=0) > runs[0].started_at.replace(second=0, microsecond=0)
    assert not MessageRecipient.objects.filter(message_id=runs[0].message_id, recipient=late).exists()
    wait_until(lambda: Delivery.objects.filter(status=DeliveryStatus.SENT).count() == 3, timeout=60,
               message="three in-app deliveries sent")
    broadcast_pause(broadcast=b)
    paused_at = timezone.now()
    time.sleep(75 - paused_at.second)  # past the next minute boundary and its tick
    assert BroadcastRun.objects.filter(broadcast=b).count() == 2  # exactly once per tick, none while paused
    task_id = b.periodic_task_id
    broadcast_delete(broadcast=b)
    assert not PeriodicTask.objects.filter(pk=task_id).exists()
