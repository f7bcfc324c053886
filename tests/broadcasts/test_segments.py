"""Segments: validation naming the clause path, compilation to one query, the API and its preview."""
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from notifyhub.broadcasts.models import Segment, Subscription, Topic
from notifyhub.broadcasts.segments import SegmentInvalid, segment_validate
from notifyhub.broadcasts.selectors import segment_recipients
from preferences.models import ContactPoint, Recipient

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(db):
    def make(external_id, locale="", timezone="", data=None, email=False, sms=False):
        r = Recipient.objects.create(external_id=external_id, locale=locale, timezone=timezone, data=data or {})
        if email:
            ContactPoint.objects.create(recipient=r, kind="email", address=f"{external_id}@example.com")
        if sms:
            ContactPoint.objects.create(recipient=r, kind="sms", address="+8613800138000", active=sms != "off")
        return r

    make("a", "zh-CN", "Asia/Shanghai", {"city": "上海", "vip_level": 3, "tags": ["vip", "beta"]}, email=True)
    make("b", "zh-CN", "Asia/Shanghai", {"city": "北京", "vip_level": 10, "note": "likes vip lounges"}, sms=True)
    make("c", "en", "Europe/London", {"city": "London", "vip_level": "10"}, sms="off")  # a string, not a number
    make("d", "en-US", "America/New_York", {"vip_level": 2.5, "prefs": {"color": "red"}})
    make("e", "", "", {})
    topic = Topic.objects.create(key="news", name="News")
    Subscription.objects.create(topic=topic, recipient=Recipient.objects.get(external_id="b"))


def match(definition) -> list[str]:
    return sorted(segment_recipients(definition=definition).values_list("external_id", flat=True))


def clause(field, op, value=None, **kw):
    c = {"field": field, "op": op, **kw}
    if value is not None:
        c["value"] = value
    return c


@pytest.mark.parametrize("definition, expected", [
    (clause("locale", "=", "zh-CN"), ["a", "b"]),
    (clause("locale", "!=", "zh-CN"), ["c", "d", "e"]),
    (clause("locale", "in", ["en", "en-US"]), ["c", "d"]),
    (clause("locale", "contains", "en"), ["c", "d"]),
    (clause("locale", "exists", False), ["e"]),
    (clause("timezone", "=", "Europe/London"), ["c"]),
    (clause("has_address", "=", "email"), ["a"]),
    (clause("has_address", "=", "sms"), ["b"]),  # c's number is deactivated
    (clause("has_address", "!=", "sms"), ["a", "c", "d", "e"]),
    (clause("has_address", "in", ["email", "sms"]), ["a", "b"]),
    (clause("topic", "=", "news"), ["b"]),
    (clause("topic", "!=", "news"), ["a", "c", "d", "e"]),
    (clause("data.city", "=", "上海"), ["a"]),
    (clause("data.city", "!=", "上海"), ["b", "c", "d", "e"]),  # missing key counts as different
    (clause("data.city", "in", ["上海", "London"]), ["a", "c"]),
    # numbers compare as numbers: 10 >= 3 (not "10" < "3"), and the string "10" never passes
    (clause("data.vip_level", ">=", 3), ["a", "b"]),
    (clause("data.vip_level", ">", 3), ["b"]),
    (clause("data.vip_level", "<", 3), ["d"]),
    (clause("data.vip_level", "<=", 3), ["a", "d"]),
    (clause("data.vip_level", "=", 10), ["b"]),
    (clause("data.vip_level", "=", "10"), ["c"]),
    (clause("data.tags", "contains", "vip"), ["a"]),
    (clause("data.note", "contains", "vip"), ["b"]),
    (clause("data.tags", "exists", True), ["a"]),
    (clause("data.city", "exists", False), ["d", "e"]),
    (clause("data.prefs.color", "=", "red"), ["d"]),
    (clause("data.prefs.color", "exists"), ["d"]),
    ({"all": [clause("locale", "=", "zh-CN"), clause("data.vip_level", ">=", 3)]}, ["a", "b"]),
    ({"any": [clause("data.city", "=", "London"), {"not": clause("locale", "exists", True)}]}, ["c", "e"]),
    ({"all": [clause("locale", "=", "zh-CN"), {"not": {"any": [clause("topic", "=", "news"),
                                                               clause("data.vip_level", "<", 0)]}}]}, ["a"]),
    (clause("created_at", ">=", "2000-01-01"), ["a", "b", "c", "d", "e"]),
    (clause("updated_at", "<", "2000-01-01T00:00:00Z"), []),
])
def test_segment_matches(people, definition, expected):
    assert match(definition) == expected


def test_a_segment_is_one_query(people):
    definition = {"all": [clause("topic", "=", "news"), clause("has_address", "=", "sms"),
                          {"any": [clause("data.vip_level", ">=", 3), clause("data.tags", "contains", "x")]}]}
    with CaptureQueriesContext(connection) as queries:
        assert match(definition) == ["b"]
    assert len(queries) == 1


@pytest.mark.parametrize("definition, path", [
    ([], "definition"),
    ({"all": []}, "definition.all"),
    ({"all": [clause("locale", "=", "x"), clause("data.vip_level", "~", 3)]}, "definition.all[1].op"),
    ({"all": [clause("locale", "=", "x"), {"any": [clause("shoe", "=", 1)]}]}, "definition.all[1].any[0].field"),
    ({"not": clause("data.vip_level", ">=", "3")}, "definition.not.value"),
    (clause("has_address", "=", "pigeon"), "definition.value"),
    (clause("created_at", "<", "yesterday"), "definition.value"),
    (clause("locale", "in", "en"), "definition.value"),
    (clause("locale", ">", "en"), "definition.op"),
    (clause("data.x", "=", {"a": 1}), "definition.value"),
    (clause("data.", "=", 1), "definition.field"),
    ({"field": "locale", "op": "="}, "definition.value"),
    ({"all": [clause("locale", "=", "x")], "any": []}, "definition"),
])
def test_validation_names_the_clause_path(definition, path):
    with pytest.raises(SegmentInvalid) as info:
        segment_validate(definition=definition)
    assert path in info.value.errors, info.value.errors


def test_segment_api_crud_validation_and_preview(api, people):
    definition = {"all": [clause("data.vip_level", ">=", 3)]}
    response = api.post("/api/v1/segments", data=json.dumps({"key": "vip", "name": "VIP", "definition": definition}),
                        content_type="application/json")
    assert response.status_code == 201, response.json()
    bad = {"key": "bad", "name": "Bad", "definition": {"all": [clause("locale", "=", "x"), clause("data.v", "~", 1)]}}
    response = api.post("/api/v1/segments", data=json.dumps(bad), content_type="application/json")
    assert response.status_code == 400 and "definition.all[1].op" in response.json()
    response = api.post("/api/v1/segments", data=json.dumps({**bad, "key": "vip", "definition": definition}),
                        content_type="application/json")
    assert response.status_code == 400 and "key" in response.json()
    assert Segment.objects.count() == 1
    response = api.patch("/api/v1/segments/vip", data=json.dumps({"definition": {"not": clause("x", "=", 1)}}),
                         content_type="application/json")
    assert response.status_code == 400 and "definition.not.field" in response.json()
    preview = api.post("/api/v1/segments/vip/preview").json()
    assert preview["count"] == 2 and [r["external_id"] for r in preview["sample"]] == ["a", "b"]
    assert api.get("/api/v1/segments").json()["results"][0]["key"] == "vip"
    assert api.delete("/api/v1/segments/vip").status_code == 204


def test_preview_shows_ten_of_many(api):
    Recipient.objects.bulk_create([Recipient(external_id=f"r{i:02}", locale="fr") for i in range(25)])
    Segment.objects.create(key="fr", name="French", definition=clause("locale", "=", "fr"))
    preview = api.post("/api/v1/segments/fr/preview").json()
    assert preview["count"] == 25 and len(preview["sample"]) == 10
