"""Channel fallback push → sms and dead push addresses, end to end on real workers: a
recipient with no device gets SMS; a dead subscription (410) fails, is deactivated, and the
message falls back to SMS; a working one gets push only. The dead address is never used again."""
import json
import re
import threading
import time
import uuid

import pytest
from werkzeug.wrappers import Response

from notifyhub.messaging.models import Delivery
from preferences.models import ContactPoint
from tests import factories
from tests.channels.push_peers import Browser, PushService, pem, vapid_key_pair
from tests.conftest import wait_until

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]
SUBJECT = "mailto:ops@example.com"
FINAL = {"sent", "delivered", "failed", "skipped", "cancelled"}


class Peers:
    """A Web Push service (decrypting like a browser) and a Twilio Messages endpoint."""

    def __init__(self, httpserver):
        key, public = vapid_key_pair()
        self.vapid_pem = pem(key)
        self.push = PushService(application_server_key=public, subject=SUBJECT)
        self.dead_hits = 0
        self.sms: list[str] = []
        self.lock = threading.Lock()
        httpserver.expect_request(re.compile(r"^/push/.*")).respond_with_handler(self.push.handle)
        httpserver.expect_request(re.compile(r"^/gone/.*")).respond_with_handler(self.gone)
        httpserver.expect_request(re.compile(r"^/2010-04-01/Accounts/.*/Messages.json$"), method="POST") \
            .respond_with_handler(self.twilio)
        self.httpserver = httpserver

    def gone(self, request):
        with self.lock:
            self.dead_hits += 1
        return Response("", status=410)  # RFC 8030: the subscription has expired

    def twilio(self, request):
        with self.lock:
            self.sms.append(request.form["To"])
        return Response(json.dumps({"sid": "SM" + uuid.uuid4().hex, "status": "queued"}), status=201,
                        content_type="application/json")

    def browser(self) -> Browser:
        return self.push.register(Browser(endpoint=self.httpserver.url_for(f"/push/{uuid.uuid4().hex}")))

    def dead_address(self) -> str:
        return Browser(endpoint=self.httpserver.url_for(f"/gone/{uuid.uuid4().hex}")).address()


def setup_channels(peers: Peers, httpserver):
    factories.channel(name="webpush", kind="push", backend="webpush",
                      options={"vapid_subject": SUBJECT}, secrets={"vapid_private_key": peers.vapid_pem})
    factories.channel(name="twilio", kind="sms", backend="twilio", rate_limit="none", options={
        "account_sid": "AC" + "3" * 32, "from_number": "+14155550100",
        "api_base": httpserver.url_for("").rstrip("/")}, secrets={"auth_token": "e" * 32})
    return factories.template(routing="fallback", fallback_chain=["push", "sms"], content={
        "push": {"title": "Sign-in code", "body": "Your code is {{ code }}"},
        "sms": {"text": "Your code is {{ code }}"},
    })


def person(phone: str, push: str | None = None):
    recipient = factories.recipient(email=None, phone=phone)
    if push:
        ContactPoint.objects.create(recipient=recipient, kind="push", app="webpush", address=push)
    return recipient


def send(api, template, people, code="913"):
    response = api.post("/api/v1/messages", content_type="application/json", data=json.dumps(
        {"template": template.key, "to": [p.external_id for p in people], "context": {"name": "A", "code": code}}))
    assert response.status_code == 202, response.content
    return response.json()["id"]


def by_channel(message_id, recipient):
    return {d.channel: d for d in Delivery.objects.filter(message_id=message_id, recipient=recipient)}


def settled(message_id):
    rows = list(Delivery.objects.filter(message_id=message_id).values_list("channel", "status"))
    return rows and all(status in FINAL for _, status in rows)


def test_fallback_push_to_sms(api, start_worker, httpserver):
    peers = Peers(httpserver)
    template = setup_channels(peers, httpserver)
    no_device = person("+14155551001")
    dead = person("+14155551002", push=peers.dead_address())
    working_browser = peers.browser()
    working = person("+14155551003", push=working_browser.address())
    start_worker()

    message = send(api, template, [no_device, dead, working])
    wait_until(lambda: settled(message) and Delivery.objects.filter(message_id=message).count() == 5,
               timeout=60, message="deliveries settled")

    first = by_channel(message, no_device)
    assert (first["push"].status, first["push"].reason) == ("skipped", "no_address")
    assert first["sms"].status == "sent"
    assert first["sms"].fallback_from_id is None  # planned at once: push could never deliver

    second = by_channel(message, dead)
    assert second["push"].status == "failed"
    assert second["sms"].status == "sent" and second["sms"].fallback_from_id == second["push"].id
    assert any("fallback from push: failed" in line for line in second["sms"].explain)
    point = ContactPoint.objects.get(recipient=dead, kind="push")
    assert not point.active and point.deactivated_reason.startswith("dead")

    third = by_channel(message, working)
    assert set(third) == {"push"} and third["push"].status == "sent"
    assert [r["payload"]["title"] for r in peers.push.received] == ["Sign-in code"]
    assert peers.push.received[0]["payload"]["body"] == "Your code is 913"
    assert sorted(peers.sms) == ["+14155551001", "+14155551002"]

    # The dead subscription is not used again: the next message goes straight to SMS.
    again = send(api, template, [dead], code="914")
    wait_until(lambda: settled(again) and Delivery.objects.filter(message_id=again).count() == 2,
               timeout=60, message="second message settled")
    retry = by_channel(again, dead)
    assert (retry["push"].status, retry["push"].reason) == ("skipped", "suppressed")
    assert retry["sms"].status == "sent"
    assert peers.dead_hits == 1


def sms_then_inapp(peers, httpserver, timeout: int):
    factories.inapp_channel()
    factories.channel(name="twilio-main", kind="sms", backend="twilio", rate_limit="none", options={
        "account_sid": "AC" + "3" * 32, "from_number": "+14155550100",
        "api_base": httpserver.url_for("").rstrip("/")}, secrets={"auth_token": "e" * 32})
    return factories.template(routing="fallback", fallback_chain=["sms", "inapp"], fallback_timeout_seconds=timeout,
                              content={"sms": {"text": "Code {{ code }}"}, "inapp": {"title": "Code {{ code }}"}})


def twilio_callback(client, sid: str, status: str):
    import base64
    import hashlib
    import hmac
    from urllib.parse import urlencode

    url = "https://notify.example.com/hooks/channels/twilio-main/"
    params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": "AC" + "3" * 32}
    data = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    signature = base64.b64encode(hmac.new(b"e" * 32, data.encode(), hashlib.sha1).digest()).decode()
    return client.post("/hooks/channels/twilio-main/", data=urlencode(params),
                       content_type="application/x-www-form-urlencoded", HTTP_X_TWILIO_SIGNATURE=signature)


def test_fallback_when_not_delivered_within_the_timeout(api, client, start_worker, httpserver, settings):
    settings.NOTIFYHUB_PUBLIC_URL = "https://notify.example.com"
    peers = Peers(httpserver)
    template = sms_then_inapp(peers, httpserver, timeout=2)
    late, on_time, failed = (person(f"+1415555200{n}") for n in range(3))
    start_worker(NOTIFYHUB_PUBLIC_URL="https://notify.example.com")  # so Twilio is asked to report
    message = send(api, template, [late, on_time, failed])
    wait_until(lambda: Delivery.objects.filter(message_id=message, channel="sms", status="sent").count() == 3,
               timeout=30, message="SMS sent")
    sms = {d.recipient_id: d for d in Delivery.objects.filter(message_id=message, channel="sms")}
    assert twilio_callback(client, sms[on_time.pk].provider_message_id, "delivered").status_code == 204
    assert twilio_callback(client, sms[failed.pk].provider_message_id, "undelivered").status_code == 204

    # The failed report falls back at once; the silent one after the 2 s timeout; the delivered one never.
    assert by_channel(message, failed)["inapp"].fallback_from_id == sms[failed.pk].id
    wait_until(lambda: "inapp" in by_channel(message, late), timeout=30, message="timeout fallback")
    fallback = by_channel(message, late)["inapp"]
    assert fallback.fallback_from_id == sms[late.pk].id
    assert any("not delivered within the fallback timeout" in line for line in fallback.explain)
    time.sleep(3)
    assert set(by_channel(message, on_time)) == {"sms"}
    assert by_channel(message, on_time)["sms"].status == "delivered"
