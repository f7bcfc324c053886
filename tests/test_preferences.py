"""Who gets what: opt-outs, critical categories, missing and suppressed addresses, the
most-specific-preference rule, and the recipients/preferences API."""
import json

import pytest

from notifyhub.messaging.models import Delivery
from preferences.models import Preference
from preferences.selectors import preference_decide
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def channels(db):
    factories.inapp_channel()
    factories.smtp_channel(2525)


def send(api, template, to):
    response = api.post("/api/v1/messages", data=json.dumps(
        {"template": template.key, "to": to, "context": {"name": "A", "code": "1"}}), content_type="application/json")
    assert response.status_code == 202, response.content
    return {(d["recipient"], d["channel"]): d for d in response.json()["deliveries"]}


def test_opted_out_is_skipped_critical_still_reaches_missing_address_is_skipped(api, channels):
    marketing = factories.category(key="marketing")
    security = factories.category(key="security", critical=True)
    opted_out = factories.recipient()
    no_email = factories.recipient(email=None)
    Preference.objects.create(recipient=opted_out, category=None, channel="", enabled=False)

    result = send(api, factories.template(category=marketing), [opted_out.external_id, no_email.external_id])
    assert (result[(opted_out.external_id, "email")]["status"], result[(opted_out.external_id, "email")]["reason"]) \
        == ("skipped", "opted_out")
    assert result[(opted_out.external_id, "inapp")]["reason"] == "opted_out"
    assert (result[(no_email.external_id, "email")]["status"], result[(no_email.external_id, "email")]["reason"]) \
        == ("skipped", "no_address")
    assert result[(no_email.external_id, "inapp")]["status"] == "queued"

    critical = send(api, factories.template(category=security), [opted_out.external_id])
    assert critical[(opted_out.external_id, "email")]["status"] == "queued"
    assert "critical" in critical[(opted_out.external_id, "email")]["explain"][0]
    stored = Delivery.objects.get(recipient=opted_out, channel="email", message__template__category=marketing)
    assert (stored.status, stored.reason) == ("skipped", "opted_out")


def test_suppressed_address_is_skipped(api, channels):
    person = factories.recipient()
    person.contact_points.filter(kind="email").update(active=False, deactivated_reason="hard bounce")
    result = send(api, factories.template(), [person.external_id])
    assert result[(person.external_id, "email")]["reason"] == "suppressed"


@pytest.mark.parametrize(("prefs", "expected", "rule"), [
    ([], True, "default"),
    ([("cat", "email", False)], False, "cat/email"),
    ([("cat", "", False), ("cat", "email", True)], True, "cat/email"),
    ([(None, "email", False), ("cat", "", True)], True, "cat/all channels"),
    ([(None, "", False), (None, "email", True)], True, "all categories/email"),
    ([(None, "", False)], False, "all categories/all channels"),
])
def test_most_specific_preference_wins(prefs, expected, rule):
    category = factories.category(key="cat")
    person = factories.recipient()
    rows = [Preference(recipient=person, category=category if c else None, channel=ch, enabled=on)
            for c, ch, on in prefs]
    decision = preference_decide(category=category, channel="email", preferences=rows)
    assert decision.allowed is expected
    assert rule in decision.rule


def test_category_default_off_for_a_channel():
    category = factories.category(channel_defaults={"email": False})
    decision = preference_decide(category=category, channel="email", preferences=[])
    assert not decision.allowed and decision.reason == "opted_out"


def test_template_without_content_for_a_requested_channel_is_skipped_with_reason(api, channels):
    template = factories.template(content={"inapp": {"title": "t", "body": "b"}})
    person = factories.recipient()
    response = api.post("/api/v1/messages", data=json.dumps({
        "template": template.key, "to": [person.external_id], "channels": ["email", "inapp"],
        "context": {"name": "A", "code": "1"}}), content_type="application/json")
    by_channel = {d["channel"]: d for d in response.json()["deliveries"]}
    assert by_channel["email"]["reason"] == "no_content"
    assert by_channel["inapp"]["status"] == "queued"


def test_recipient_upsert_read_search_delete(api):
    response = api.put("/api/v1/recipients/u-1", data=json.dumps(
        {"name": "Ada", "email": "ada@example.com", "phone": "+44 7911 123456", "timezone": "Europe/London"}),
        content_type="application/json")
    assert response.status_code == 201, response.content
    assert {c["kind"]: c["address"] for c in response.json()["contacts"]} == {
        "email": "ada@example.com", "sms": "+447911123456"}
    response = api.put("/api/v1/recipients/u-1", data=json.dumps({"email": "ada@new.example.com"}),
                       content_type="application/json")
    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "Ada"
    assert {c["kind"]: c["address"] for c in body["contacts"]}["email"] == "ada@new.example.com"
    assert api.get("/api/v1/recipients?search=new.example").json()["count"] == 1
    assert api.get("/api/v1/recipients?search=nobody").json()["count"] == 0
    assert api.put("/api/v1/recipients/u-1", data=json.dumps({"phone": "123"}),
                   content_type="application/json").status_code == 400
    assert api.delete("/api/v1/recipients/u-1").status_code == 204
    assert api.get("/api/v1/recipients/u-1").status_code == 404


def test_preferences_put_and_get(api):
    factories.category(key="marketing")
    person = factories.recipient()
    url = f"/api/v1/recipients/{person.external_id}/preferences"
    prefs = {"preferences": [{"category": "marketing", "channel": None, "enabled": False},
                             {"category": None, "channel": "sms", "enabled": False}]}
    response = api.put(url, data=json.dumps(prefs), content_type="application/json")
    assert response.status_code == 200, response.content
    assert sorted(api.get(url).json()["preferences"], key=str) == sorted(prefs["preferences"], key=str)
    bad = {"preferences": [{"category": "nope", "channel": "email", "enabled": "no"}]}
    response = api.put(url, data=json.dumps(bad), content_type="application/json")
    assert response.status_code == 400
    assert Preference.objects.filter(recipient=person).count() == 2


def test_recipient_quiet_hours_set_read_clear_and_validated(api):
    url = "/api/v1/recipients/u-quiet"
    response = api.put(url, data=json.dumps({"timezone": "Asia/Shanghai",
                                             "quiet_hours": {"start": "22:00", "end": "08:00"}}),
                       content_type="application/json")
    assert response.status_code in (200, 201), response.content
    assert api.get(url).json()["quiet_hours"] == {"start": "22:00", "end": "08:00"}
    bad = api.put(url, data=json.dumps({"quiet_hours": {"start": "25:00", "end": "08:00"}}),
                  content_type="application/json")
    assert bad.status_code == 400 and "quiet_hours" in bad.json()
    assert api.get(url).json()["quiet_hours"] == {"start": "22:00", "end": "08:00"}
    cleared = api.put(url, data=json.dumps({"quiet_hours": None}), content_type="application/json")
    assert cleared.status_code == 200 and api.get(url).json()["quiet_hours"] is None
