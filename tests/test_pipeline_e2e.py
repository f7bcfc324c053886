"""End to end on PostgreSQL, Redis and real Celery worker processes: API → dispatch → deliver,
retries with backoff, and crash safety (SIGKILL mid-batch, lost broker messages)."""
import base64
import hashlib
import hmac
import json
import threading
import time

import pytest
import redis
from django.conf import settings
from werkzeug.wrappers import Response

from channels_app.backends.webhook import generate_secret
from notifyhub.messaging.models import Delivery, DeliveryEvent, Message
from tests import factories
from tests.conftest import SmtpSink, wait_until

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]
FINAL = {"sent", "delivered", "failed", "skipped", "cancelled"}


def verify_standard_webhook(secret: str, headers, body: bytes) -> bool:
    """The receiver's side of the Standard Webhooks spec, written from the spec."""
    headers = {k.lower(): v for k, v in headers.items()}
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(sig.split(",", 1)[1] == expected for sig in headers["webhook-signature"].split(" "))


def webhook_only(httpserver, handler):
    """A webhook account pointing at the local server, and a webhook-only template."""
    httpserver.expect_request("/hook", method="POST").respond_with_handler(handler)
    factories.webhook_channel(httpserver.url_for("/hook"))
    return factories.template(content={"webhook": {"payload": {"n": "{{ name }}"}}})


def send(api, body, **headers):
    response = api.post("/api/v1/messages", data=json.dumps(body), content_type="application/json", **headers)
    assert response.status_code == 202, response.content
    return response.json()


def all_final(message_id):
    statuses = list(Delivery.objects.filter(message_id=message_id).values_list("status", flat=True))
    return statuses and all(s in FINAL for s in statuses)


def test_one_call_two_recipients_email_webhook_inapp(api, start_worker, smtp_server, httpserver):
    secret = generate_secret()
    received = []

    def webhook(request):
        received.append((dict(request.headers), request.get_data()))
        ok = verify_standard_webhook(secret, request.headers, request.get_data())
        return Response("ok" if ok else "bad signature", status=200 if ok else 401)

    httpserver.expect_request("/hook", method="POST").respond_with_handler(webhook)
    factories.smtp_channel(smtp_server.port)
    factories.webhook_channel(httpserver.url_for("/hook"), secret=secret)
    factories.inapp_channel()
    template = factories.template()
    start_worker()

    body = send(api, {"template": template.key, "context": {"name": "Ada", "code": "913"}, "to": [
        {"external_id": "r1", "email": "r1@example.com", "name": "R One"},
        {"external_id": "r2", "email": "r2@example.com", "name": "R Two"},
    ]})
    wait_until(lambda: all_final(body["id"]), timeout=60, message="deliveries to finish")

    wait_until(lambda: Message.objects.get(pk=body["id"]).status == "sent", timeout=10, message="roll-up")
    detail = api.get(f"/api/v1/messages/{body['id']}").json()
    assert detail["status"] == "sent"
    assert sorted((d["recipient"], d["channel"], d["status"]) for d in detail["deliveries"]) == [
        ("r1", "email", "sent"), ("r1", "inapp", "sent"), ("r1", "webhook", "sent"),
        ("r2", "email", "sent"), ("r2", "inapp", "sent"), ("r2", "webhook", "sent")]
    assert [e["status"] for e in detail["deliveries"][0]["events"]] == ["queued", "sending", "sent"]

    mails = {m["To"]: m for m in smtp_server.messages}
    assert set(mails) == {"r1@example.com", "r2@example.com"}
    mail = mails["r1@example.com"]
    assert mail["Subject"] == "Hello Ada"
    parts = {p.get_content_type(): p.get_payload(decode=True).decode() for p in mail.walk() if not p.is_multipart()}
    assert parts["text/plain"] == "Hi Ada, code 913."
    assert parts["text/html"] == "<p>Hi <b>Ada</b>, code 913.</p>"

    assert len(received) == 2
    for headers, raw in received:
        assert verify_standard_webhook(secret, headers, raw)
        payload = json.loads(raw)
        assert payload["data"] == {"event": "code", "name": "Ada", "code": "913"}
        assert payload["type"] == template.key
    from channels_app.models import InboxEntry

    assert sorted(InboxEntry.objects.values_list("recipient_key", "title")) == [("r1", "Hello Ada"),
                                                                                ("r2", "Hello Ada")]


def test_transient_errors_retry_with_growing_delays_then_succeed(api, start_worker, httpserver):
    calls = []

    def flaky(request):
        calls.append(time.monotonic())
        return Response("busy", status=503) if len(calls) <= 2 else Response("ok", status=200)

    template = webhook_only(httpserver, flaky)
    start_worker()
    body = send(api, {"template": template.key, "to": [{"external_id": "w1"}], "context": {"name": "A", "code": "1"}})
    wait_until(lambda: all_final(body["id"]), timeout=60, message="retries to finish")

    delivery = Delivery.objects.get(message_id=body["id"])
    assert delivery.status == "sent" and delivery.attempts == 3
    assert len(calls) == 3
    first_wait, second_wait = calls[1] - calls[0], calls[2] - calls[1]
    print(f"retry waits: {first_wait:.2f}s then {second_wait:.2f}s")
    assert 0.4 < first_wait < second_wait
    statuses = list(DeliveryEvent.objects.filter(delivery=delivery).values_list("status", flat=True))
    # A retry may be released by the due-time dispatcher (a "queued" event) or by its countdown.
    assert statuses[0] == "queued"
    assert [s for s in statuses if s != "queued"] == ["sending", "pending", "sending", "pending", "sending", "sent"]


def test_permanent_error_fails_at_once_with_the_response(api, start_worker, httpserver):
    httpserver.expect_request("/hook", method="POST").respond_with_json({"error": "unknown tenant"}, status=400)
    factories.webhook_channel(httpserver.url_for("/hook"))
    template = factories.template(content={"webhook": {"payload": {"n": "{{ name }}"}}})
    start_worker()
    body = send(api, {"template": template.key, "to": [{"external_id": "w1"}], "context": {"name": "A", "code": "1"}})
    wait_until(lambda: all_final(body["id"]), timeout=60, message="failure")
    delivery = Delivery.objects.get(message_id=body["id"])
    assert delivery.status == "failed" and delivery.attempts == 1
    assert "400" in delivery.detail and "unknown tenant" in delivery.detail
    # The message rolls up just after its batch is recorded; give it that moment.
    wait_until(lambda: Message.objects.get(pk=body["id"]).status == "failed", timeout=10, message="roll-up")


def test_sigkill_mid_batch_loses_nothing_and_resends_at_most_in_flight(api, start_worker):
    sink = SmtpSink(delay=0.03)
    try:
        factories.smtp_channel(sink.port)
        template = factories.template(content={"email": {"subject": "s {{ name }}", "text": "t"}})
        recipients = [factories.recipient() for _ in range(300)]
        worker = start_worker(name="victim")
        body = send(api, {"template": template.key, "to": [r.external_id for r in recipients],
                          "context": {"name": "A", "code": "1"}})
        wait_until(lambda: len(sink.messages) >= 40, timeout=60, message="sending to start")
        worker.kill()
        in_flight = Delivery.objects.filter(message_id=body["id"], status="sending").count()
        received_before_restart = len(sink.messages)

        start_worker(name="rescuer")
        wait_until(lambda: all_final(body["id"]), timeout=120, message="every delivery to end")
        ids = [m["X-Notifyhub-Delivery"] for m in sink.messages]
        duplicates = len(ids) - len(set(ids))
        print(f"\nkilled with {in_flight} deliveries in flight ({received_before_restart} received); "
              f"{duplicates} reached the SMTP server twice")
        assert set(Delivery.objects.filter(message_id=body["id"]).values_list("status", flat=True)) == {"sent"}
        assert len(set(ids)) == 300
        assert duplicates <= in_flight
    finally:
        sink.stop()


def test_resent_webhook_carries_the_same_webhook_id(api, start_worker, httpserver):
    seen = []
    release = threading.Event()

    def slow_first(request):
        seen.append(request.headers["webhook-id"])
        if len(seen) == 1:
            release.wait(15)  # the worker is killed while this request hangs
        return Response("ok", status=200)

    template = webhook_only(httpserver, slow_first)
    worker = start_worker(name="victim")
    body = send(api, {"template": template.key, "to": [{"external_id": "w1"}], "context": {"name": "A", "code": "1"}})
    wait_until(lambda: seen, timeout=30, message="the first webhook request")
    worker.kill()
    release.set()
    start_worker(name="rescuer")
    wait_until(lambda: all_final(body["id"]), timeout=60, message="the resend")
    delivery = Delivery.objects.get(message_id=body["id"])
    assert delivery.status == "sent"
    assert len(seen) == 2 and seen[0] == seen[1] == f"msg_{delivery.id}"


def test_lost_broker_message_is_finished_by_the_sweeper(api, start_worker, smtp_server):
    factories.smtp_channel(smtp_server.port)
    template = factories.template(content={"email": {"subject": "s", "text": "t"}})
    body = send(api, {"template": template.key, "to": [{"external_id": "x", "email": "x@example.com"}],
                      "context": {"name": "A", "code": "1"}})
    assert Delivery.objects.get(message_id=body["id"]).status == "queued"
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # the broker forgets the task
    start_worker()
    wait_until(lambda: all_final(body["id"]), timeout=60, message="the sweeper to rescue the delivery")
    delivery = Delivery.objects.get(message_id=body["id"])
    assert delivery.status == "sent" and len(smtp_server.messages) == 1
    assert any("sweeper" in e.detail for e in delivery.events.all()) or delivery.attempts == 1


def test_send_at_is_released_by_the_due_time_dispatcher(api, start_worker, smtp_server):
    from datetime import timedelta

    from django.utils import timezone

    factories.smtp_channel(smtp_server.port)
    template = factories.template(content={"email": {"subject": "s", "text": "t"}})
    send_at = timezone.now() + timedelta(seconds=3)
    body = send(api, {"template": template.key, "to": [{"external_id": "x", "email": "x@example.com"}],
                      "send_at": send_at.isoformat(), "context": {"name": "A", "code": "1"}})
    assert body["status"] == "scheduled"
    start_worker()
    wait_until(lambda: all_final(body["id"]), timeout=60, message="the scheduled send")
    delivery = Delivery.objects.get(message_id=body["id"])
    assert delivery.sent_at >= send_at
    wait_until(lambda: Message.objects.get(pk=body["id"]).status == "sent", timeout=10, message="roll-up")
