"""Track: anymail tracking webhooks and provider status callbacks move deliveries forward,
once per event, and bounces and complaints suppress the address."""
import base64
import hashlib
import hmac
import json
import time
import uuid
from urllib.parse import urlencode

import pytest
from django.test import override_settings

from notifyhub.messaging.models import Delivery, DeliveryEvent, DeliveryStatus
from preferences.models import ContactPoint
from tests import factories

pytestmark = pytest.mark.django_db

SIGNING_KEY = "key-mailgun-webhook-signing"
ANYMAIL = {"WEBHOOK_SECRET": "hook:s3cret", "MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}
BASIC = "Basic " + base64.b64encode(b"hook:s3cret").decode()


def send(api, template, to, **extra):
    response = api.post("/api/v1/messages", data=json.dumps(
        {"template": template.key, "to": to, "context": {"name": "A", "code": "1"}, **extra}),
        content_type="application/json")
    assert response.status_code == 202, response.content
    return {(d["recipient"], d["channel"]): d for d in response.json()["deliveries"]}


def sent_email(api, person, message_id: str) -> Delivery:
    """An e-mail delivery as the ESP accepted it (the send itself is covered by the anymail tests)."""
    template = factories.template(content={"email": {"subject": "Hi {{ name }}", "text": "Code {{ code }}"}})
    deliveries = send(api, template, [person.external_id])
    delivery = Delivery.objects.get(pk=deliveries[(person.external_id, "email")]["id"])
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SENT, provider_message_id=message_id)
    return delivery


def mailgun_event(event: str, message_id: str, recipient: str, **event_data) -> dict:
    """A Mailgun webhook body, signed as Mailgun documents: HMAC-SHA256(key, timestamp + token)."""
    timestamp, token = str(int(time.time())), uuid.uuid4().hex
    signature = hmac.new(SIGNING_KEY.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": {"event": event, "id": uuid.uuid4().hex, "timestamp": time.time(), "recipient": recipient,
                       "message": {"headers": {"message-id": message_id.strip("<>")}}, **event_data},
    }


def post_mailgun(client, body: dict, auth: str = BASIC):
    return client.post("/hooks/anymail/mailgun/tracking/", data=json.dumps(body),
                       content_type="application/json", HTTP_AUTHORIZATION=auth)


@pytest.fixture
def email_channel(db):
    factories.smtp_channel(2525)


@override_settings(ANYMAIL=ANYMAIL)
def test_bounce_marks_delivery_bounced_suppresses_address_and_is_applied_once(api, client, email_channel):
    person = factories.recipient(email="gone@example.com")
    delivery = sent_email(api, person, "<20261128.abc@mg.example.com>")
    bounce = mailgun_event("failed", "<20261128.abc@mg.example.com>", "gone@example.com", severity="permanent",
                           reason="bounce", **{"delivery-status": {"code": 550, "message": "No such user"}})

    assert post_mailgun(client, bounce).status_code == 200
    delivery.refresh_from_db()
    assert (delivery.status, delivery.reason) == ("bounced", "bounced")
    point = ContactPoint.objects.get(recipient=person, kind="email")
    assert not point.active and "bounced" in point.deactivated_reason
    events = DeliveryEvent.objects.filter(delivery=delivery).count()

    # The same event again (ESPs retry webhooks): nothing changes.
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SENT)  # would be moved again if re-applied
    assert post_mailgun(client, bounce).status_code == 200
    assert DeliveryEvent.objects.filter(delivery=delivery).count() == events
    assert Delivery.objects.get(pk=delivery.pk).status == "sent"

    # The next message to that address is skipped as suppressed.
    again = send(api, factories.template(), [person.external_id])
    assert (again[(person.external_id, "email")]["status"], again[(person.external_id, "email")]["reason"]) \
        == ("skipped", "suppressed")

    # Reversible: the operator reactivates the address and it is used again.
    point.active, point.deactivated_reason = True, ""
    point.save()
    assert send(api, factories.template(), [person.external_id])[(person.external_id, "email")]["status"] == "queued"


@override_settings(ANYMAIL=ANYMAIL)
def test_delivered_then_opened_moves_forward_only(api, client, email_channel):
    person = factories.recipient()
    delivery = sent_email(api, person, "<m1@mg.example.com>")
    opened = mailgun_event("opened", "<m1@mg.example.com>", person.contact_points.get().address)
    delivered = mailgun_event("delivered", "<m1@mg.example.com>", person.contact_points.get().address)
    # Out of order: the open arrives first; it is engagement and moves nothing.
    assert post_mailgun(client, opened).status_code == 200
    assert Delivery.objects.get(pk=delivery.pk).status == "sent"
    assert post_mailgun(client, delivered).status_code == 200
    assert Delivery.objects.get(pk=delivery.pk).status == "delivered"
    kinds = list(DeliveryEvent.objects.filter(delivery=delivery).values_list("status", flat=True))
    assert "opened" in kinds and kinds[-1] == "delivered"
    # A late "sent"-level event cannot move it back; a complaint later still counts.
    complained = mailgun_event("complained", "<m1@mg.example.com>", person.contact_points.get().address)
    assert post_mailgun(client, complained).status_code == 200
    assert Delivery.objects.get(pk=delivery.pk).status == "complained"
    assert not person.contact_points.get().active


@override_settings(ANYMAIL=ANYMAIL)
def test_tracking_webhook_needs_the_secret_and_the_esp_signature(api, client, email_channel):
    person = factories.recipient()
    delivery = sent_email(api, person, "<m2@mg.example.com>")
    event = mailgun_event("delivered", "<m2@mg.example.com>", "x@example.com")
    wrong_auth = "Basic " + base64.b64encode(b"hook:wrong").decode()
    assert post_mailgun(client, event, auth=wrong_auth).status_code in (400, 401, 403)
    forged = {**event, "signature": {**event["signature"], "signature": "0" * 64}}
    assert post_mailgun(client, forged).status_code in (400, 403)
    assert Delivery.objects.get(pk=delivery.pk).status == "sent"
    assert not DeliveryEvent.objects.filter(delivery=delivery, status="delivered").exists()


# --- Twilio status callback through /hooks/channels/<account>/ ---------------------------------------------
AUTH_TOKEN = "twilio-auth-token-0123456789abcdef"


def twilio_signature(url: str, params: dict) -> str:
    """As Twilio documents: HMAC-SHA1(auth token, URL + each POST name and value, sorted by name), base64."""
    data = url + "".join(f"{name}{params[name]}" for name in sorted(params))
    return base64.b64encode(hmac.new(AUTH_TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()


@pytest.fixture
def twilio_account(db, settings):
    settings.NOTIFYHUB_PUBLIC_URL = "https://notify.example.com"
    return factories.channel(name="twilio-main", kind="sms", backend="twilio", options={
        "account_sid": "AC" + "a" * 32, "from_number": "+15005550006", "api_base": "http://127.0.0.1:9"},
        secrets={"auth_token": AUTH_TOKEN})


def sent_sms(api, person, sid: str, config) -> Delivery:
    template = factories.template(content={"sms": {"text": "Code {{ code }}"}})
    delivery = Delivery.objects.get(pk=send(api, template, [person.external_id])[(person.external_id, "sms")]["id"])
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SENT, provider_message_id=sid,
                                                   channel_config=config)
    return delivery


def post_twilio(client, params: dict, signature: str):
    return client.post("/hooks/channels/twilio-main/", data=urlencode(params),
                       content_type="application/x-www-form-urlencoded", HTTP_X_TWILIO_SIGNATURE=signature)


def test_twilio_status_callback_with_valid_signature_marks_delivered(api, client, twilio_account):
    person = factories.recipient(phone="+8613800138000")
    delivery = sent_sms(api, person, "SM" + "1" * 32, twilio_account)
    params = {"MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered", "AccountSid": "AC" + "a" * 32,
              "To": "+8613800138000", "From": "+15005550006", "ApiVersion": "2010-04-01"}
    url = "https://notify.example.com/hooks/channels/twilio-main/"
    response = post_twilio(client, params, twilio_signature(url, params))
    assert response.status_code in (200, 204), response.content
    assert Delivery.objects.get(pk=delivery.pk).status == "delivered"


def test_twilio_status_callback_with_bad_signature_is_403_and_changes_nothing(api, client, twilio_account):
    person = factories.recipient(phone="+8613800138001")
    delivery = sent_sms(api, person, "SM" + "2" * 32, twilio_account)
    params = {"MessageSid": "SM" + "2" * 32, "MessageStatus": "delivered", "AccountSid": "AC" + "a" * 32}
    url = "https://notify.example.com/hooks/channels/twilio-main/"
    bad = twilio_signature(url, {**params, "MessageStatus": "failed"})
    events = DeliveryEvent.objects.filter(delivery=delivery).count()
    assert post_twilio(client, params, bad).status_code == 403
    assert post_twilio(client, params, "").status_code == 403
    assert Delivery.objects.get(pk=delivery.pk).status == "sent"
    assert DeliveryEvent.objects.filter(delivery=delivery).count() == events


def test_tracking_webhooks_are_refused_without_a_webhook_secret(api, client, email_channel, settings):
    settings.ANYMAIL = {"MAILGUN_WEBHOOK_SIGNING_KEY": SIGNING_KEY}
    person = factories.recipient()
    delivery = sent_email(api, person, "<m3@mg.example.com>")
    response = post_mailgun(client, mailgun_event("delivered", "<m3@mg.example.com>", "x@example.com"))
    assert response.status_code == 403
    assert Delivery.objects.get(pk=delivery.pk).status == "sent"


def test_callback_for_unknown_account_is_403_like_a_bad_signature(client):
    assert client.post("/hooks/channels/nope/", data={}).status_code == 403
