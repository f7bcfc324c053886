"""The send API: validation (nothing written on bad input), auth and scopes, idempotency."""
import json

import pytest

from notifyhub.api.models import IdempotencyRecord
from notifyhub.messaging.models import Delivery, Message
from preferences.models import ContactPoint, Recipient
from tests import factories

pytestmark = pytest.mark.django_db
URL = "/api/v1/messages"


@pytest.fixture
def setup(db):
    factories.inapp_channel()
    factories.smtp_channel(2525)
    template = factories.template()
    known = factories.recipient()
    return template, known


def send(api, body, **headers):
    return api.post(URL, data=json.dumps(body), content_type="application/json", **headers)


def counts():
    return Message.objects.count(), Delivery.objects.count(), Recipient.objects.count(), ContactPoint.objects.count()


def test_send_accepts_and_lists_deliveries(api, setup):
    template, known = setup
    response = send(api, {"template": template.key, "to": [known.external_id, {
        "external_id": "new-1", "email": "New@Example.COM", "phone": "+8613800138000", "name": "New",
        "timezone": "Asia/Shanghai"}], "context": {"name": "Ada", "code": "42"}})
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["status"] == "processing"
    channels = sorted((d["recipient"], d["channel"], d["status"]) for d in body["deliveries"])
    assert ("new-1", "email", "queued") in channels and (known.external_id, "inapp", "queued") in channels
    new = Recipient.objects.get(external_id="new-1")
    assert set(new.contact_points.values_list("kind", "address")) == {
        ("email", "New@example.com"), ("sms", "+8613800138000")}
    # webhook content exists but no webhook account is configured: skipped with a reason
    skipped = [d for d in body["deliveries"] if d["channel"] == "webhook"]
    assert skipped and all(d["status"] == "skipped" and d["reason"] == "channel_unavailable" for d in skipped)


BAD_INPUTS = [
    ({"template": "nope"}, "template"),
    ({"context": {"name": "Ada"}}, "context"),  # code missing
    ({"channels": ["pigeon"]}, "channels"),
    ({"to": [{"external_id": "x", "email": "not-an-email"}]}, "to"),
    ({"to": [{"external_id": "x", "phone": "12345"}]}, "to"),
    ({"to": ["ghost"]}, "to"),
    ({"to": "user"}, "to"),
    ({"to": [123]}, "to"),
    ({"to": [{"external_id": 5}]}, "to"),
    ({"context": ["a"]}, "context"),
    ({"dry_run": "yes"}, "dry_run"),
    ({"send_at": 17}, "send_at"),
    ({"to": []}, "to"),
    ({"to": [{"external_id": "x", "timezone": "Mars/Olympus"}]}, "to"),
]


@pytest.mark.parametrize(("change", "field"), BAD_INPUTS)
def test_bad_input_is_a_field_error_and_writes_nothing(api, setup, change, field):
    template, known = setup
    body = {"template": template.key, "to": [known.external_id, {"external_id": "fresh", "email": "f@example.com"}],
            "context": {"name": "Ada", "code": "1"}, **change}
    before = counts()
    response = send(api, body)
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()
    assert counts() == before


def test_unknown_recipient_error_names_its_position(api, setup):
    template, known = setup
    response = send(api, {"template": template.key, "to": [known.external_id, "ghost"],
                          "context": {"name": "A", "code": "1"}})
    assert response.status_code == 400
    assert "1" in response.json()["to"]


def test_body_over_512_kb_is_refused(api, setup):
    template, known = setup
    before = counts()
    body = {"template": template.key, "to": [known.external_id],
            "context": {"name": "x" * (513 * 1024), "code": "1"}}
    response = send(api, body)
    assert response.status_code == 413
    assert "body" in response.json()
    assert counts() == before


def test_not_json_is_a_400(api, setup):
    response = api.post(URL, data="{not json", content_type="application/json")
    assert response.status_code == 400


def test_auth_and_scopes(client, setup):
    template, known = setup
    body = json.dumps({"template": template.key, "to": [known.external_id], "context": {"name": "A", "code": "1"}})
    assert client.post(URL, data=body, content_type="application/json").status_code == 401
    assert client.post(URL, data=body, content_type="application/json",
                       HTTP_AUTHORIZATION="Api-Key bad.key").status_code == 401
    _, read_only = factories.api_key(scopes=["read"])
    response = client.post(URL, data=body, content_type="application/json", HTTP_AUTHORIZATION=f"Api-Key {read_only}")
    assert response.status_code == 403
    _, send_only = factories.api_key(scopes=["send"])
    assert client.get("/api/v1/templates", HTTP_AUTHORIZATION=f"Api-Key {send_only}").status_code == 403
    assert Message.objects.count() == 0


def test_a_key_sees_only_its_own_messages(api, client, setup):
    template, known = setup
    message_id = send(api, {"template": template.key, "to": [known.external_id],
                            "context": {"name": "A", "code": "1"}}).json()["id"]
    _, other = factories.api_key(scopes=["send", "read"])
    auth = {"HTTP_AUTHORIZATION": f"Api-Key {other}"}
    assert client.get(f"{URL}/{message_id}", **auth).status_code == 404
    assert client.post(f"{URL}/{message_id}/cancel", **auth).status_code == 404
    assert client.get(URL, **auth).json()["count"] == 0
    assert api.get(f"{URL}/{message_id}").status_code == 200
    assert api.get(URL).json()["count"] == 1


def test_idempotency_replay_mismatch_and_conflict(api, setup):
    template, known = setup
    body = {"template": template.key, "to": [known.external_id], "context": {"name": "A", "code": "1"}}
    first = send(api, body, HTTP_IDEMPOTENCY_KEY="order-1")
    again = send(api, body, HTTP_IDEMPOTENCY_KEY="order-1")
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json()
    assert Message.objects.count() == 1
    other = send(api, {**body, "context": {"name": "B", "code": "1"}}, HTTP_IDEMPOTENCY_KEY="order-1")
    assert other.status_code == 422
    assert Message.objects.count() == 1
    # A duplicate arriving while the first is still in progress.
    from notifyhub.api.idempotency import request_hash

    IdempotencyRecord.objects.create(api_key=api.api_key, key="order-2", request_hash=request_hash(body))
    assert send(api, body, HTTP_IDEMPOTENCY_KEY="order-2").status_code == 409
    assert Message.objects.count() == 1


def test_idempotency_key_is_per_api_key(api, client, setup):
    template, known = setup
    body = {"template": template.key, "to": [known.external_id], "context": {"name": "A", "code": "1"}}
    send(api, body, HTTP_IDEMPOTENCY_KEY="k")
    _, other = factories.api_key(scopes=["send"])
    response = client.post(URL, data=json.dumps(body), content_type="application/json",
                           HTTP_AUTHORIZATION=f"Api-Key {other}", HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 202
    assert Message.objects.count() == 2


def test_failed_request_releases_its_idempotency_key(api, setup):
    template, known = setup
    bad = {"template": template.key, "to": [known.external_id], "context": {"name": "A"}}
    assert send(api, bad, HTTP_IDEMPOTENCY_KEY="k").status_code == 400
    good = {**bad, "context": {"name": "A", "code": "1"}}
    assert send(api, good, HTTP_IDEMPOTENCY_KEY="k").status_code == 202


def test_dry_run_decides_and_renders_but_writes_nothing(api, setup):
    template, known = setup
    before = counts()
    response = send(api, {"template": template.key, "dry_run": True,
                          "to": [known.external_id, {"external_id": "new", "email": "n@example.com"}],
                          "context": {"name": "Ada", "code": "7"}})
    assert response.status_code == 200, response.json()
    planned = {(d["recipient"], d["channel"]): d for d in response.json()["deliveries"]}
    email = planned[("new", "email")]
    assert email["status"] == "queued" and email["content"]["subject"] == "Hello Ada"
    assert email["explain"]
    assert counts() == before


def test_send_at_in_future_is_scheduled_without_deliveries(api, setup):
    template, known = setup
    response = send(api, {"template": template.key, "to": [known.external_id], "send_at": "2099-01-01T00:00:00Z",
                          "context": {"name": "A", "code": "1"}})
    assert response.status_code == 202
    assert response.json()["status"] == "scheduled" and response.json()["deliveries"] == []


def test_cancel_cancels_unsent(api, setup):
    template, known = setup
    message_id = send(api, {"template": template.key, "to": [known.external_id],
                            "context": {"name": "A", "code": "1"}}).json()["id"]
    response = api.post(f"{URL}/{message_id}/cancel")
    assert response.status_code == 200
    assert response.json()["cancelled"] == 2  # email and in-app were queued
    statuses = set(Delivery.objects.filter(message_id=message_id).values_list("status", flat=True))
    assert statuses == {"cancelled", "skipped"}
