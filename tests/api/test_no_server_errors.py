"""No 5xx from input: taken unique values, over-long ids and unknown URLs answer 4xx JSON."""
import json
import threading

import pytest
from django.db import connection

from notifyhub.messaging.models import Message
from preferences.models import ContactPoint, Recipient
from tests import factories

pytestmark = pytest.mark.django_db


def send_json(client, method, url, body):
    return getattr(client, method)(url, data=json.dumps(body), content_type="application/json")


CATEGORY = {"key": "orders", "name": "Orders"}


def template_body(key, category):
    return {"key": key, "name": "T", "category": category, "variables": [], "content": {"inapp": {"title": "x"}}}


def channel_body(name):
    return {"name": name, "kind": "inapp", "backend": "inapp"}


@pytest.mark.parametrize("collection,body,field", [
    ("categories", CATEGORY, "key"),
    ("templates", None, "key"),
    ("channels", channel_body("main"), "name"),
])
def test_creating_a_taken_unique_value_is_a_400_naming_the_field(api, collection, body, field):
    category = factories.category(key="orders")
    body = body or template_body("welcome", category.key)
    if collection != "categories":
        assert send_json(api, "post", f"/api/v1/{collection}", body).status_code == 201

    response = send_json(api, "post", f"/api/v1/{collection}", body)

    assert response.status_code == 400, response.content
    assert field in response.json()


@pytest.mark.parametrize("method", ["put", "patch"])
@pytest.mark.parametrize("collection,make,field", [
    ("categories", lambda key, cat: {"key": key, "name": "N"}, "key"),
    ("templates", lambda key, cat: template_body(key, cat), "key"),
    ("channels", lambda key, cat: channel_body(key), "name"),
])
def test_renaming_onto_a_taken_unique_value_is_a_400_naming_the_field(api, method, collection, make, field):
    factories.category(key="base")
    for key in ("first", "second"):
        created = send_json(api, "post", f"/api/v1/{collection}", make(key, "base"))
        assert created.status_code == 201, created.content

    body = make("first", "base") if method == "put" else {field: "first"}
    response = send_json(api, method, f"/api/v1/{collection}/second", body)

    assert response.status_code == 400, response.content
    assert field in response.json()


def test_unique_constraint_race_is_a_400_from_the_database(api):
    """The pre-check passed, then a concurrent write took the key: the constraint answers."""
    from notifyhub.api.serializers.manage import CategorySerializer

    serializer = CategorySerializer(data=CATEGORY)
    assert serializer.is_valid()
    factories.category(key="orders")  # the competitor commits first
    with pytest.raises(Exception) as caught:
        serializer.save()
    assert caught.value.detail == {"key": ["A category with this key already exists."]}
    assert Message.objects.count() == 0  # the surrounding transaction is still usable


def test_recipient_id_over_255_characters_is_a_400(api):
    response = send_json(api, "put", "/api/v1/recipients/" + "x" * 300, {"name": "Long"})

    assert response.status_code == 400
    assert "external_id" in response.json()
    assert not Recipient.objects.exists()


@pytest.mark.parametrize("method,url", [
    ("get", "/api/v1/messages/not-a-uuid"),
    ("get", "/api/v1/nowhere"),
    ("post", "/api/v1/messages/00000000-0000-0000-0000-000000000000/nothing"),
    ("get", "/api/v1/recipients/a/contact-points/not-an-int"),
    ("get", "/api/v2/messages"),
])
def test_every_error_under_api_is_json(api, method, url):
    response = getattr(api, method)(url)

    assert response.status_code == 404
    assert response["Content-Type"].startswith("application/json")
    assert response.json() == {"detail": "Not found."}


def test_a_method_the_operation_lacks_is_a_json_4xx(api):
    response = api.delete("/api/v1/messages")
    assert 400 <= response.status_code < 500
    assert response["Content-Type"].startswith("application/json")


# --- concurrent upserts ---------------------------------------------------------------------------
def _in_parallel(n, work):
    barrier, results, errors = threading.Barrier(n), [None] * n, []

    def run(index):
        try:
            barrier.wait(10)
            results[index] = work(index)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    return results


@pytest.mark.django_db(transaction=True)
def test_ten_concurrent_sends_to_one_new_inline_recipient_all_succeed():
    from rest_framework.test import APIClient

    factories.inapp_channel()
    factories.smtp_channel(2525)
    template = factories.template()
    _, key = factories.api_key()
    body = {"template": template.key, "context": {"name": "Ada", "code": "1"},
            "to": [{"external_id": "racer", "email": "racer@example.com", "phone": "+8613800138000", "name": "R"}]}

    def send(_):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        return send_json(client, "post", "/api/v1/messages", body).status_code

    assert _in_parallel(10, send) == [202] * 10
    assert Recipient.objects.filter(external_id="racer").count() == 1
    assert ContactPoint.objects.filter(recipient__external_id="racer").count() == 2
    assert Message.objects.count() == 10


@pytest.mark.django_db(transaction=True)
def test_concurrent_recipient_puts_and_contact_point_adds_all_succeed():
    from rest_framework.test import APIClient

    _, key = factories.api_key()
    factories.recipient(external_id="owner", email=None)

    def put_and_add(index):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        put = send_json(client, "put", "/api/v1/recipients/shared", {"email": "shared@example.com"}).status_code
        add = send_json(client, "post", "/api/v1/recipients/owner/contact-points",
                        {"kind": "inapp", "address": "device-1"}).status_code
        return put, add

    results = _in_parallel(10, put_and_add)
    assert all(put in (200, 201) and add in (200, 201) for put, add in results), results
    assert Recipient.objects.filter(external_id="shared").count() == 1
    assert ContactPoint.objects.filter(recipient__external_id="shared").count() == 1
    assert ContactPoint.objects.filter(recipient__external_id="owner").count() == 1


@pytest.mark.parametrize("app", ["", "no-such-account"])
def test_contact_point_url_is_checked_whatever_the_app(api, app):
    factories.recipient(external_id="owner", email=None)
    response = send_json(api, "post", "/api/v1/recipients/owner/contact-points",
                         {"kind": "webhook", "address": "http://10.0.0.1:8899/x", "app": app})
    assert response.status_code == 400, response.content
    assert "address" in response.json()
    assert not ContactPoint.objects.filter(recipient__external_id="owner").exists()


def test_contact_point_app_naming_an_account_uses_its_backend_check(api):
    factories.recipient(external_id="owner", email=None)
    factories.webhook_channel("https://hooks.example.com/in", name="hooks")
    bad = send_json(api, "post", "/api/v1/recipients/owner/contact-points",
                    {"kind": "webhook", "address": "http://10.0.0.1/x", "app": "hooks"})
    good = send_json(api, "post", "/api/v1/recipients/owner/contact-points",
                     {"kind": "webhook", "address": "https://hooks.example.com/mine", "app": "hooks"})
    assert bad.status_code == 400 and good.status_code == 201, (bad.content, good.content)


@pytest.mark.parametrize("url,where", [
    ("/api/v1/messages?template=%00", "template"), ("/api/v1/messages?recipient=a%00b", "recipient"),
    ("/api/v1/messages?status=%00", "status"), ("/api/v1/recipients?search=%00", "search"),
    ("/api/v1/recipients/%00", "path"), ("/api/v1/recipients/%00/preferences", "path"),
    ("/api/v1/recipients/%00/contact-points", "path"), ("/api/v1/templates/%00", "path"),
    ("/api/v1/categories/%00", "path"), ("/api/v1/channels/a%00", "path"),
    ("/api/v1/messages/00000000-0000-0000-0000-000000000000/deliveries?reason=%00", "reason"),
])
def test_nul_in_the_path_or_a_query_parameter_is_a_400_naming_it(api, url, where):
    response = api.get(url)
    assert response.status_code == 400, response.content
    assert where in response.json()


def test_nul_in_a_callback_account_name_is_refused_like_any_unknown_account(client):
    assert client.post("/hooks/channels/a%00b/", data=b"{}", content_type="application/json").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_concurrent_sends_updating_overlapping_recipients_in_opposite_orders_all_succeed():
    from rest_framework.test import APIClient

    factories.inapp_channel()
    template = factories.template()
    _, key = factories.api_key()
    people = [f"p-{i}" for i in range(30)]
    for external_id in people:
        factories.recipient(external_id=external_id)

    def send(index):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        order = people if index % 2 else people[::-1]
        to = [{"external_id": eid, "name": f"name {index}"} for eid in order]
        return send_json(client, "post", "/api/v1/messages",
                         {"template": template.key, "to": to, "context": {"name": "a", "code": "b"}}).status_code

    assert _in_parallel(8, send) == [202] * 8
    assert Recipient.objects.filter(external_id__in=people).count() == 30
