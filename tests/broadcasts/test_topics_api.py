"""Topics API: CRUD with scopes, subscribers added and removed in bulk with set-based SQL."""
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from notifyhub.broadcasts.models import Subscription, Topic
from preferences.models import ContactPoint, Recipient
from tests import factories

pytestmark = pytest.mark.django_db


def post(api, url, body):
    return api.post(url, data=json.dumps(body), content_type="application/json")


def client_with(*scopes):
    _, key = factories.api_key(scopes=scopes, name="-".join(scopes))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def test_topic_crud(api):
    category = factories.category()
    response = post(api, "/api/v1/topics", {"key": "release-notes", "name": "Release notes",
                                            "default_category": category.key})
    assert response.status_code == 201, response.json()
    assert response.json()["subscriber_count"] == 0
    assert api.get("/api/v1/topics/release-notes").json()["default_category"] == category.key
    response = api.patch("/api/v1/topics/release-notes", data=json.dumps({"description": "Weekly"}),
                         content_type="application/json")
    assert response.status_code == 200 and response.json()["description"] == "Weekly"
    response = api.put("/api/v1/topics/release-notes", data=json.dumps({"key": "release-notes", "name": "RN"}),
                       content_type="application/json")
    assert response.status_code == 200 and response.json()["name"] == "RN"
    assert [t["key"] for t in api.get("/api/v1/topics").json()["results"]] == ["release-notes"]
    assert api.delete("/api/v1/topics/release-notes").status_code == 204
    assert not Topic.objects.exists()


@pytest.mark.parametrize("body, field", [
    ({"name": "No key"}, "key"),
    ({"key": "has space", "name": "x"}, "key"),
    ({"key": "t", "name": "x", "default_category": "nope"}, "default_category"),
    ({"key": "dup", "name": "again"}, "key"),  # uniqueness: 400 naming the field, not 500
    ({"key": "t", "name": 5}, "name"),
])
def test_bad_topic_input_answers_400_naming_the_field_and_writes_nothing(api, body, field):
    Topic.objects.create(key="dup", name="Dup")
    response = post(api, "/api/v1/topics", body)
    assert response.status_code == 400 and field in response.json(), response.json()
    assert Topic.objects.count() == 1


def test_scopes():
    Topic.objects.create(key="t", name="T")
    reader, sender = client_with("read"), client_with("send")
    assert reader.get("/api/v1/topics").status_code == 200
    assert post(reader, "/api/v1/topics", {"key": "x", "name": "X"}).status_code == 403
    assert post(sender, "/api/v1/topics", {"key": "x", "name": "X"}).status_code == 403
    assert post(reader, "/api/v1/topics/t/subscribers", {"recipients": ["a"]}).status_code == 403
    factories.recipient(external_id="a")
    assert post(sender, "/api/v1/topics/t/subscribers", {"recipients": ["a"]}).status_code == 200
    assert post(sender, "/api/v1/topics/t/subscribers/remove", {"external_ids": ["a"]}).status_code == 200
    assert client_with("manage").get("/api/v1/topics/t/subscribers").status_code == 403
    assert reader.get("/api/v1/topics/t/subscribers").status_code == 200


def test_subscribe_is_idempotent_and_upserts_inline_recipients(api):
    Topic.objects.create(key="t", name="T")
    known = factories.recipient(external_id="known")
    body = {"recipients": ["known", {"external_id": "new-1", "email": "New@Example.COM", "name": "New"}, "known"]}
    response = post(api, "/api/v1/topics/t/subscribers", body)
    assert response.status_code == 200, response.json()
    assert response.json() == {"added": 2, "already": 0, "removed": 0, "unknown": {}}
    assert post(api, "/api/v1/topics/t/subscribers", body).json()["added"] == 0
    assert post(api, "/api/v1/topics/t/subscribers", body).json()["already"] == 2
    assert set(Subscription.objects.values_list("recipient__external_id", flat=True)) == {"known", "new-1"}
    assert ContactPoint.objects.get(recipient__external_id="new-1").address == "New@example.com"
    assert known.topic_subscriptions.count() == 1


def test_unknown_ids_are_reported_by_position_and_nothing_is_written(api):
    Topic.objects.create(key="t", name="T")
    factories.recipient(external_id="a")
    response = post(api, "/api/v1/topics/t/subscribers",
                    {"recipients": ["a", "ghost", {"external_id": "new", "name": "N"}, "ghost2"]})
    assert response.status_code == 400
    assert set(response.json()["recipients"]) == {"1", "3"}
    assert not Subscription.objects.exists() and not Recipient.objects.filter(external_id="new").exists()


@pytest.mark.parametrize("body", [
    {}, {"recipients": []}, {"recipients": "a"}, {"recipients": [5]},
    {"recipients": [{"external_id": "x", "email": "not-an-email"}]},
    {"recipients": ["a"] * 10001},
])
def test_bad_subscriber_input_answers_400(api, body):
    Topic.objects.create(key="t", name="T")
    factories.recipient(external_id="a")
    response = post(api, "/api/v1/topics/t/subscribers", body)
    assert response.status_code == 400 and "recipients" in response.json()
    assert not Subscription.objects.exists()


def test_remove_reports_unknown_ids_and_is_idempotent(api):
    topic = Topic.objects.create(key="t", name="T")
    a, b = factories.recipient(external_id="a"), factories.recipient(external_id="b")
    Subscription.objects.bulk_create([Subscription(topic=topic, recipient=a), Subscription(topic=topic, recipient=b)])
    response = post(api, "/api/v1/topics/t/subscribers/remove", {"external_ids": ["a", "ghost"]})
    assert response.json() == {"added": 0, "already": 0, "removed": 1, "unknown": {"1": "ghost"}}
    assert post(api, "/api/v1/topics/t/subscribers/remove", {"external_ids": ["a"]}).json()["removed"] == 0
    assert list(topic.subscriptions.values_list("recipient__external_id", flat=True)) == ["b"]
    assert api.get("/api/v1/topics/nope/subscribers").status_code == 404


def test_subscriber_list_is_cursor_paginated(api):
    topic = Topic.objects.create(key="t", name="T")
    Recipient.objects.bulk_create([Recipient(external_id=f"r{i:03}") for i in range(25)])
    post(api, "/api/v1/topics/t/subscribers", {"recipients": [f"r{i:03}" for i in range(25)]})
    seen, url = [], "/api/v1/topics/t/subscribers?page_size=10"
    while url:
        page = api.get(url).json()
        seen += [row["external_id"] for row in page["results"]]
        url = page["next"]
    assert sorted(seen) == [f"r{i:03}" for i in range(25)] and len(seen) == 25
    assert api.get("/api/v1/topics").json()["results"][0]["subscriber_count"] == 25 == topic.subscriptions.count()


def _statements(api, url, body) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = post(api, url, body)
    assert response.status_code == 200, response.json()
    return len(queries)


@pytest.mark.services
def test_statement_count_does_not_grow_with_the_number_of_ids(api):
    """Set-based SQL: subscribing 10 or 5,000 (half of them inline upserts) costs the same statements."""
    Topic.objects.create(key="t", name="T")
    Recipient.objects.bulk_create([Recipient(external_id=f"k{i}") for i in range(5000)])

    def body(n, tag):
        return {"recipients": [f"k{i}" for i in range(n // 2)]
                + [{"external_id": f"{tag}{i}", "email": f"{tag}{i}@example.com"} for i in range(n // 2)]}

    small = _statements(api, "/api/v1/topics/t/subscribers", body(10, "s"))
    large = _statements(api, "/api/v1/topics/t/subscribers", body(5000, "l"))
    assert small == large, (small, large)
    assert Subscription.objects.count() == 5 + 2500 + 2500  # k0..k4 overlap with k0..k2499
    removal_small = _statements(api, "/api/v1/topics/t/subscribers/remove", {"external_ids": ["k0", "x"]})
    removal_large = _statements(api, "/api/v1/topics/t/subscribers/remove",
                                {"external_ids": [f"k{i}" for i in range(5000)]})
    assert removal_small == removal_large
