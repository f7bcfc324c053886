"""The broadcasts API: CRUD scoped to the key, schedule/pause/resume/cancel, runs."""
import json

import pytest
from django_celery_beat.models import PeriodicTask
from rest_framework.test import APIClient

from notifyhub.broadcasts.models import Broadcast, Subscription, Topic
from notifyhub.broadcasts.runs import broadcast_run
from tests import factories

pytestmark = pytest.mark.django_db


def send(api, method, url, body=None):
    return getattr(api, method)(url, data=json.dumps(body) if body is not None else None,
                                content_type="application/json")


@pytest.fixture
def setup(db):
    topic = Topic.objects.create(key="news", name="News")
    Subscription.objects.create(topic=topic, recipient=factories.recipient())
    return factories.template(), topic


def body(tpl, **kw):
    return {"name": "Weekly", "template": tpl.key, "topics": ["news"], "context": {"name": "a", "code": "1"},
            "schedule": "cron", "cron": "0 10 * * 1", "timezone": "Asia/Shanghai", **kw}


def test_broadcast_lifecycle(api, setup):
    template, _ = setup
    response = send(api, "post", "/api/v1/broadcasts", body(template))
    assert response.status_code == 201, response.json()
    bid = response.json()["id"]
    assert response.json()["status"] == "draft" and not PeriodicTask.objects.exists()
    response = send(api, "post", f"/api/v1/broadcasts/{bid}/schedule")
    assert response.status_code == 200 and response.json()["status"] == "scheduled"
    task = PeriodicTask.objects.get(name=f"notifyhub-broadcast-{bid}")
    response = send(api, "patch", f"/api/v1/broadcasts/{bid}", {"cron": "15 9 * * *"})
    assert response.status_code == 200
    task.refresh_from_db()
    assert (task.crontab.minute, task.crontab.hour) == ("15", "9")
    assert send(api, "post", f"/api/v1/broadcasts/{bid}/pause").json()["status"] == "paused"
    task.refresh_from_db()
    assert not task.enabled
    assert send(api, "post", f"/api/v1/broadcasts/{bid}/resume").json()["status"] == "scheduled"
    broadcast_run(broadcast_id=bid)
    runs = api.get(f"/api/v1/broadcasts/{bid}/runs").json()["results"]
    assert len(runs) == 1 and runs[0]["recipient_count"] == 1
    assert send(api, "post", f"/api/v1/broadcasts/{bid}/cancel").json()["status"] == "cancelled"
    assert not PeriodicTask.objects.exists()
    assert api.delete(f"/api/v1/broadcasts/{bid}").status_code == 204 and not Broadcast.objects.exists()


@pytest.mark.parametrize("changes, field", [
    ({"template": "nope"}, "template"),
    ({"topics": ["nope"]}, "topics"),
    ({"all_recipients": True}, "confirm_all"),
    ({"schedule": "weekly"}, "schedule"),
    ({"name": 5}, "name"),
])
def test_bad_broadcasts_answer_400_by_field(api, setup, changes, field):
    response = send(api, "post", "/api/v1/broadcasts", body(setup[0], **changes))
    assert response.status_code == 400 and field in response.json(), response.json()
    assert not Broadcast.objects.exists()


def test_schedule_refuses_what_cannot_run(api, setup):
    bid = send(api, "post", "/api/v1/broadcasts", body(setup[0], context={}, cron="every day")).json()["id"]
    response = send(api, "post", f"/api/v1/broadcasts/{bid}/schedule")
    assert response.status_code == 400 and {"cron", "context"} <= set(response.json()), response.json()
    assert not PeriodicTask.objects.exists()


def test_a_key_sees_only_its_own_broadcasts(api, setup):
    bid = send(api, "post", "/api/v1/broadcasts", body(setup[0])).json()["id"]
    _, key = factories.api_key(scopes=["send", "read"], name="other")
    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    assert other.get(f"/api/v1/broadcasts/{bid}").status_code == 404
    assert other.get("/api/v1/broadcasts").json()["results"] == []
    assert send(other, "post", f"/api/v1/broadcasts/{bid}/schedule").status_code == 404
    _, reader_key = factories.api_key(scopes=["read"], name="reader")
    reader = APIClient()
    reader.credentials(HTTP_AUTHORIZATION=f"Api-Key {reader_key}")
    assert send(reader, "post", "/api/v1/broadcasts", body(setup[0])).status_code == 403


def test_test_send_reaches_one_recipient_and_leaves_the_broadcast_as_it_was(api, setup):
    from notifyhub.messaging.models import Message, MessageRecipient

    factories.inapp_channel()
    chosen = factories.recipient()
    bid = send(api, "post", "/api/v1/broadcasts", body(setup[0], channels=["inapp"])).json()["id"]
    response = send(api, "post", f"/api/v1/broadcasts/{bid}/test", {"recipient": chosen.external_id})
    assert response.status_code == 202, response.json()
    message = Message.objects.get(pk=response.json()["message"])
    assert list(MessageRecipient.objects.filter(message=message).values_list("recipient_id", flat=True)) == [
        chosen.pk]
    assert Broadcast.objects.get().status == "draft" and not Broadcast.objects.get().runs.exists()
    response = send(api, "post", f"/api/v1/broadcasts/{bid}/test", {"recipient": "ghost"})
    assert response.status_code == 400 and Message.objects.count() == 1
