"""Bad provider configuration is a field error at save time, in the API and in the admin, for
the new backends: a missing option, a malformed private key, a bad URL. Nothing is saved."""
import json

import pytest
from django.urls import reverse

from channels_app.models import ChannelConfig
from preferences.models import ContactPoint
from tests import factories

pytestmark = pytest.mark.django_db

TEAM = {"team_id": "ABCDE12345", "key_id": "KEY1234567", "bundle_id": "com.example.app"}
CASES = [
    # (backend, kind, options, secrets, field named in the error)
    ("apns", "push", TEAM, {"private_key": "-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----"},
     "private_key"),
    ("apns", "push", {"team_id": "ABCDE12345", "bundle_id": "com.example.app"}, {"private_key": "x"}, "key_id"),
    ("fcm", "push", {"project_id": "demo"}, {"service_account_json": '{"type": "service_account"'},
     "service_account_json"),
    ("webpush", "push", {"vapid_subject": "mailto:ops@example.com"}, {"vapid_private_key": "nope"},
     "vapid_private_key"),
    ("twilio", "sms", {"account_sid": "AC" + "1" * 32, "from_number": "+14155550100"}, {}, "auth_token"),
    ("twilio", "sms", {"account_sid": "AC" + "1" * 32, "from_number": "+14155550100", "api_base": "ftp://x"},
     {"auth_token": "t" * 32}, "api_base"),
    ("dingtalk", "chat", {}, {"webhook_url": "not a url", "secret": "SEC" + "a" * 20}, "webhook_url"),
    ("wechat_oa", "wechat", {"app_id": "wx123"}, {"app_secret": "0" * 32}, "app_id"),
    ("slack", "chat", {}, {}, "webhook_url"),
]


@pytest.mark.parametrize(("backend", "kind", "options", "secrets", "field"), CASES)
def test_api_names_the_bad_field_and_saves_nothing(api, backend, kind, options, secrets, field):
    response = api.post("/api/v1/channels", data=json.dumps({
        "name": f"bad-{backend}", "kind": kind, "backend": backend, "options": options, "secrets": secrets,
    }), content_type="application/json")
    assert response.status_code == 400, response.content
    errors = response.json()
    group = "secrets" if field in secrets or field in ("auth_token", "webhook_url") else "options"
    assert field in errors.get(group, {}), errors
    assert not ChannelConfig.objects.exists()


@pytest.mark.parametrize(("backend", "kind", "options", "secrets", "field"), CASES)
def test_admin_names_the_bad_field_and_saves_nothing(admin_client, backend, kind, options, secrets, field):
    response = admin_client.post(reverse("admin:channels_app_channelconfig_add"), {
        "name": f"bad-{backend}", "kind": kind, "backend": backend, "enabled": "on", "priority": "100",
        "weight": "1", "rate_limit": "", "failure_threshold": "5", "open_seconds": "60",
        "options": json.dumps(options), "secrets": json.dumps(secrets),
    })
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert any(field in str(message) for messages in errors.values() for message in messages), errors
    assert not ChannelConfig.objects.exists()


def test_rate_limit_is_validated(api):
    response = api.post("/api/v1/channels", data=json.dumps({
        "name": "inbox", "kind": "inapp", "backend": "inapp", "rate_limit": "fast"}), content_type="application/json")
    assert response.status_code == 400 and "rate_limit" in response.json()


# --- Contact points API ---------------------------------------------------------------------------
def test_contact_points_add_list_remove(api):
    person = factories.recipient(email=None)
    url = f"/api/v1/recipients/{person.external_id}/contact-points"
    token, fcm_token = "f" * 64, "dGVzdC1kZXZpY2U:APA91bH-token-1"
    added = api.post(url, data=json.dumps({"kind": "push", "app": "apns", "address": token, "label": "iPhone"}),
                     content_type="application/json")
    assert added.status_code == 201, added.content
    second = api.post(url, data=json.dumps({"kind": "push", "app": "fcm", "address": fcm_token}),
                      content_type="application/json")
    assert second.status_code == 201, second.content
    listed = api.get(url).json()
    assert sorted((p["app"], p["address"]) for p in listed) == [("apns", token), ("fcm", fcm_token)]
    assert api.delete(f"{url}/{added.json()['id']}").status_code == 204
    assert [p["app"] for p in api.get(url).json()] == ["fcm"]

    # A token the hub deactivated (unregistered) is not revived by registering it again.
    ContactPoint.objects.filter(recipient=person, app="fcm").update(active=False, deactivated_reason="dead: 404")
    again = api.post(url, data=json.dumps({"kind": "push", "app": "fcm", "address": fcm_token}),
                     content_type="application/json")
    assert again.status_code == 200 and again.json()["active"] is False


@pytest.mark.parametrize(("body", "field"), [
    ({"kind": "push", "address": "tok"}, "app"),
    ({"kind": "push", "app": "apns", "address": "not-hex!"}, "address"),
    ({"kind": "push", "app": "webpush", "address": '{"endpoint": "nope"}'}, "address"),
    ({"kind": "sms", "address": "12"}, "address"),
    ({"kind": "fax", "address": "x"}, "kind"),
])
def test_contact_point_validation_names_the_field(api, body, field):
    person = factories.recipient(email=None)
    response = api.post(f"/api/v1/recipients/{person.external_id}/contact-points", data=json.dumps(body),
                        content_type="application/json")
    assert response.status_code == 400 and field in response.json(), response.content
    assert not person.contact_points.exists()
