"""Smart delivery on real PostgreSQL, Redis and Celery worker processes: quiet hours, dedup,
frequency caps, per-account rate limits, circuit breakers with failover, and the explain
trail naming the rule that decided each delivery."""
import json
import threading
import time
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone
from werkzeug.wrappers import Response

from channels_app.breaker import breaker_state
from notifyhub.messaging.models import Delivery, Message
from preferences.models import ContactPoint
from tests import factories
from tests.conftest import wait_until

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]
SHANGHAI = ZoneInfo("Asia/Shanghai")
FINAL = {"sent", "delivered", "failed", "skipped", "cancelled"}


def post(api, body):
    response = api.post("/api/v1/messages", data=json.dumps(body), content_type="application/json")
    assert response.status_code in (200, 202), response.content
    return response.json()


def inapp_template(**kw):
    return factories.template(content={"inapp": {"title": "Hi {{ name }}", "body": "Code {{ code }}"}}, **kw)


def one(body, channel="inapp"):
    [delivery] = [d for d in body["deliveries"] if d["channel"] == channel]
    return delivery


def explains(delivery) -> str:
    return " | ".join(delivery["explain"])


# --- 1. Quiet hours -----------------------------------------------------------------------------
def next_local(hour: int, minute: int, tz=SHANGHAI) -> datetime:
    now = timezone.now().astimezone(tz)
    candidate = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return candidate if candidate > now + timedelta(minutes=5) else candidate + timedelta(days=1)


def quiet_recipient(tz="Asia/Shanghai", start=(22, 0), end=(8, 0)):
    person = factories.recipient(timezone=tz)
    person.quiet_start = datetime(2000, 1, 1, *start).time()
    person.quiet_end = datetime(2000, 1, 1, *end).time()
    person.save()
    return person


def test_quiet_hours_defer_drop_and_critical_at_2330_shanghai(api):
    factories.inapp_channel()
    person = quiet_recipient()
    send_at = next_local(23, 30)
    expected_end = (send_at + timedelta(days=1)).replace(hour=8, minute=0)
    for policy, critical, status in (("defer", False, "pending"), ("drop", False, "skipped"),
                                     ("defer", True, "queued")):
        template = inapp_template(category=factories.category(quiet_hours=policy, critical=critical))
        body = post(api, {"template": template.key, "to": [person.external_id], "dry_run": True,
                          "send_at": send_at.isoformat(), "context": {"name": "A", "code": "1"}})
        planned = one(body)
        assert planned["status"] == status, planned
        if status == "pending":
            assert datetime.fromisoformat(planned["next_attempt_at"]) == expected_end
            assert "quiet hours 22:00–08:00 Asia/Shanghai" in explains(planned)
            assert "deferred until" in explains(planned)
        elif status == "skipped":
            assert planned["reason"] == "quiet_hours" and "drops" in explains(planned)
        else:
            assert "critical" in explains(planned)


def test_quiet_hours_across_dst_in_new_york(api):
    """22:00–08:00 in America/New_York on the night the clocks spring forward (2027-03-14):
    sent at 01:30 EST the window ends at 08:00 EDT, which is 12:00 UTC, not 13:00."""
    factories.inapp_channel()
    person = quiet_recipient(tz="America/New_York")
    template = inapp_template(category=factories.category(quiet_hours="defer"))
    send_at = datetime(2027, 3, 14, 1, 30, tzinfo=ZoneInfo("America/New_York"))
    body = post(api, {"template": template.key, "to": [person.external_id], "dry_run": True,
                      "send_at": send_at.isoformat(), "context": {"name": "A", "code": "1"}})
    assert one(body)["next_attempt_at"].replace("Z", "+00:00").startswith("2027-03-14T12:00:00")


def test_deferred_delivery_waits_for_the_window_end_then_is_sent(api, start_worker):
    """A window that ends a few seconds from now: pending until then, then sent by the workers."""
    factories.inapp_channel()
    local = timezone.now().astimezone(SHANGHAI)
    end = local + timedelta(seconds=4)
    person = factories.recipient(timezone="Asia/Shanghai")
    person.quiet_start, person.quiet_end = (local - timedelta(hours=1)).time(), end.time()
    person.save()
    template = inapp_template(category=factories.category(quiet_hours="defer"))
    start_worker()
    body = post(api, {"template": template.key, "to": [person.external_id], "context": {"name": "A", "code": "1"}})
    delivery = one(body)
    assert (delivery["status"], delivery["reason"]) == ("pending", "quiet_hours")
    wait_until(lambda: Delivery.objects.get(pk=delivery["id"]).status == "sent", timeout=30, message="sent")
    sent = Delivery.objects.get(pk=delivery["id"])
    assert sent.sent_at >= end.replace(microsecond=0)


# --- 2. Dedup ------------------------------------------------------------------------------------
def test_same_message_twice_within_window_is_a_duplicate_then_sent_after(api, start_worker):
    factories.inapp_channel()
    person = factories.recipient()
    template = inapp_template(dedup_window_seconds=3)
    start_worker()
    request = {"template": template.key, "to": [person.external_id], "context": {"name": "A", "code": "1"}}
    first, second = one(post(api, request)), one(post(api, request))
    assert first["status"] == "queued"
    assert (second["status"], second["reason"]) == ("skipped", "duplicate")
    assert "dedup: same content sent within 3s" in explains(second)
    other = one(post(api, {**request, "context": {"name": "A", "code": "2"}}))  # different content
    assert other["status"] == "queued"
    time.sleep(3.2)
    third = one(post(api, request))
    assert third["status"] == "queued" and "dedup: first" in explains(third)
    wait_until(lambda: Delivery.objects.get(pk=third["id"]).status == "sent", timeout=30, message="sent")


# --- 3. Frequency caps ---------------------------------------------------------------------------
def test_cap_three_a_day_fourth_capped(api):
    factories.inapp_channel()
    person = factories.recipient()
    category = factories.category(frequency_caps=[{"channel": "inapp", "limit": 3, "period": 86400}])
    template = inapp_template(category=category)
    results = [one(post(api, {"template": template.key, "to": [person.external_id],
                              "context": {"name": "A", "code": str(n)}})) for n in range(4)]
    assert [r["status"] for r in results] == ["queued", "queued", "queued", "skipped"]
    assert results[3]["reason"] == "frequency_capped"
    assert f"frequency cap {category.key}/inapp 3 per 86400s: reached" in explains(results[3])


def test_cap_counts_stay_exact_with_two_workers(api, start_worker):
    """Five broadcasts to the same 120 recipients, dispatched in chunks of 20 by two worker
    processes at once: every recipient gets exactly three."""
    factories.inapp_channel()
    category = factories.category(frequency_caps=[{"channel": "inapp", "limit": 3, "period": 86400}])
    template = inapp_template(category=category)
    people = [factories.recipient().external_id for _ in range(120)]
    ids = [post(api, {"template": template.key, "to": people, "context": {"name": "A", "code": str(n)}})["id"]
           for n in range(5)]
    for name in ("w1", "w2"):
        start_worker(name=name, concurrency=2, beat=(name == "w1"), NOTIFYHUB_DISPATCH_CHUNK_SIZE=20)
    wait_until(lambda: Delivery.objects.filter(message_id__in=ids).count() == 600, timeout=90, message="dispatch")
    wait_until(lambda: not Delivery.objects.filter(message_id__in=ids).exclude(status__in=FINAL).exists(),
               timeout=90, message="all final")
    from django.db.models import Count, Q

    per_recipient = (Delivery.objects.filter(message_id__in=ids).values("recipient")
                     .annotate(sent=Count("id", filter=Q(status="sent")),
                               capped=Count("id", filter=Q(reason="frequency_capped"))))
    assert len(per_recipient) == 120
    assert {(row["sent"], row["capped"]) for row in per_recipient} == {(3, 2)}


# --- 4. Rate limit per account -------------------------------------------------------------------
def test_rate_ten_per_second_across_two_workers(api, start_worker, httpserver):
    arrivals, lock = [], threading.Lock()

    def sink(request):
        with lock:
            arrivals.append(time.time())
        return Response("ok")

    httpserver.expect_request("/hook", method="POST").respond_with_handler(sink)
    factories.webhook_channel(httpserver.url_for("/hook"), rate_limit="10/s")
    template = factories.template(content={"webhook": {"payload": {"n": "{{ name }}"}}})
    people = [factories.recipient().external_id for _ in range(200)]
    for name in ("w1", "w2"):
        start_worker(name=name, concurrency=2, beat=(name == "w1"), NOTIFYHUB_DELIVER_BATCH_SIZE=25)
    body = post(api, {"template": template.key, "to": people, "context": {"name": "A", "code": "1"}})
    wait_until(lambda: len(arrivals) >= 200, timeout=90, message="200 arrivals")
    time.sleep(1)
    assert len(arrivals) == 200
    arrivals.sort()
    worst = max(sum(1 for t in arrivals[i:] if t - start < 1.0) for i, start in enumerate(arrivals))
    assert worst <= 10, f"{worst} requests within one second"
    assert arrivals[-1] - arrivals[0] >= 18.5  # drained at the rate, not faster
    sample = Delivery.objects.filter(message_id=body["id"], explain__icontains="rate limit").first()
    assert sample is not None  # some waited for their slot, and say so


# --- 5. Failover with a circuit breaker ----------------------------------------------------------
class TwilioSink:
    """Two Twilio accounts on one local server: per account, answer as Twilio does."""

    def __init__(self, httpserver):
        self.primary_down = True
        self.received = {"AC" + "1" * 32: [], "AC" + "2" * 32: []}
        self.lock = threading.Lock()
        for sid in self.received:
            httpserver.expect_request(f"/2010-04-01/Accounts/{sid}/Messages.json", method="POST") \
                .respond_with_handler(self.handler(sid))

    def handler(self, sid):
        def answer(request):
            to = request.form["To"]
            if to.endswith("9999"):
                return Response(json.dumps({"code": 21211, "message": f"The 'To' number {to} is not a valid phone "
                                            "number.", "more_info": "https://www.twilio.com/docs/errors/21211",
                                            "status": 400}), status=400, content_type="application/json")
            if sid.startswith("AC1") and self.primary_down:
                return Response(json.dumps({"code": 20500, "message": "Internal Server Error", "status": 500}),
                                status=500, content_type="application/json")
            with self.lock:
                self.received[sid].append(to)
            message_sid = "SM" + uuid.uuid4().hex
            return Response(json.dumps({"sid": message_sid, "status": "queued", "to": to}), status=201,
                            content_type="application/json")
        return answer


def twilio_account(httpserver, name, sid, priority):
    return factories.channel(name=name, kind="sms", backend="twilio", priority=priority, rate_limit="none",
                             failure_threshold=3, open_seconds=3, options={
                                 "account_sid": sid, "from_number": "+14155550100",
                                 "api_base": httpserver.url_for("").rstrip("/")},
                             secrets={"auth_token": "f" * 32})


def test_breaker_opens_fails_over_and_closes_after_probe(api, start_worker, httpserver):
    sink = TwilioSink(httpserver)
    primary = twilio_account(httpserver, "sms-primary", "AC" + "1" * 32, 10)
    twilio_account(httpserver, "sms-secondary", "AC" + "2" * 32, 20)
    template = factories.template(content={"sms": {"text": "Code {{ code }}"}})
    phones = [f"+1415555{1000 + n:04d}" for n in range(12)]
    people = [factories.recipient(phone=p).external_id for p in phones]
    start_worker(NOTIFYHUB_DELIVER_BATCH_SIZE=4)
    body = post(api, {"template": template.key, "to": people, "context": {"name": "A", "code": "1"}})
    wait_until(lambda: all_sent(body["id"], 12), timeout=90, message="all 12 sent")
    assert sorted(sink.received["AC" + "2" * 32]) == sorted(phones)  # each exactly once, via the secondary
    assert sink.received["AC" + "1" * 32] == []
    assert breaker_state(primary.pk)["state"] in ("open", "half_open")
    failed_over = Delivery.objects.filter(message_id=body["id"], explain__icontains="circuit").count()
    assert failed_over > 0

    # The primary recovers: after open_seconds the half-open probe succeeds and closes the breaker.
    sink.primary_down = False
    time.sleep(3.5)
    later = [factories.recipient(phone=f"+1415555{2000 + n:04d}").external_id for n in range(3)]
    body2 = post(api, {"template": template.key, "to": later, "context": {"name": "A", "code": "2"}})
    wait_until(lambda: all_sent(body2["id"], 3), timeout=60, message="later sends")
    assert breaker_state(primary.pk)["state"] == "closed"
    assert len(sink.received["AC" + "1" * 32]) >= 1
    total = sink.received["AC" + "1" * 32] + sink.received["AC" + "2" * 32]
    assert len(total) == len(set(total)) == 15  # exactly once each


def all_sent(message_id, n):
    return Delivery.objects.filter(message_id=message_id, status="sent").count() == n


def test_invalid_number_neither_opens_the_breaker_nor_fails_over(api, start_worker, httpserver):
    sink = TwilioSink(httpserver)
    sink.primary_down = False
    primary = twilio_account(httpserver, "sms-primary", "AC" + "1" * 32, 10)
    twilio_account(httpserver, "sms-secondary", "AC" + "2" * 32, 20)
    template = factories.template(content={"sms": {"text": "Code {{ code }}"}})
    bad = factories.recipient(phone="+14155559999")
    start_worker()
    body = post(api, {"template": template.key, "to": [bad.external_id], "context": {"name": "A", "code": "1"}})
    wait_until(lambda: all_final(body["id"]), timeout=30, message="final")
    delivery = Delivery.objects.get(message_id=body["id"])
    assert delivery.status == "failed" and delivery.channel_config_id == primary.pk
    assert "21211" in delivery.reason + delivery.detail
    assert "no failover for address errors" in " ".join(delivery.explain)
    assert breaker_state(primary.pk)["state"] == "closed" and breaker_state(primary.pk)["failures"] == 0
    assert sink.received["AC" + "2" * 32] == []
    assert ContactPoint.objects.get(recipient=bad, kind="sms").active  # an invalid number is not a dead device


def all_final(message_id):
    statuses = list(Delivery.objects.filter(message_id=message_id).values_list("status", flat=True))
    return bool(statuses) and all(s in FINAL for s in statuses) and Message.objects.filter(pk=message_id).exists()


def test_cap_deferral_takes_its_unit_when_due_so_the_cap_holds(api, start_worker):
    """over_cap "defer": the deferred deliveries go out one per period, not all at once."""
    factories.inapp_channel()
    category = factories.category(over_cap="defer", frequency_caps=[{"channel": "inapp", "limit": 1, "period": 3}])
    template = inapp_template(category=category)
    person = factories.recipient()
    start_worker()
    planned = [one(post(api, {"template": template.key, "to": [person.external_id],
                              "context": {"name": "A", "code": str(n)}})) for n in range(3)]
    assert [(d["status"], d["reason"]) for d in planned] == [
        ("queued", ""), ("pending", "frequency_capped"), ("pending", "frequency_capped")]
    ids = [d["id"] for d in planned]
    wait_until(lambda: Delivery.objects.filter(pk__in=ids, status="sent").count() == 3, timeout=40,
               message="all three sent")
    sent = sorted(Delivery.objects.filter(pk__in=ids).values_list("sent_at", flat=True))
    # The first took its unit when it was planned and is sent a moment later; the others take
    # theirs when they come due and are sent at once: one unit per 3 s between takes.
    assert (sent[1] - sent[0]).total_seconds() >= 2.5, sent
    assert (sent[2] - sent[1]).total_seconds() >= 2.9, sent
    explains = [line for pk in ids[1:] for line in Delivery.objects.get(pk=pk).explain]
    assert any("frequency cap: a unit is free now" in line for line in explains), explains


def test_duplicate_ends_a_fallback_chain(api):
    factories.inapp_channel()
    factories.webhook_channel("http://127.0.0.1:9/hook")
    template = factories.template(routing="fallback", fallback_chain=["inapp", "webhook"], dedup_window_seconds=60,
                                  content={"inapp": {"title": "Hi {{ name }}"}, "webhook": {"payload": {"n": 1}}})
    person = factories.recipient()
    request = {"template": template.key, "to": [person.external_id], "context": {"name": "A", "code": "1"}}
    assert {d["channel"]: d["status"] for d in post(api, request)["deliveries"]} == {"inapp": "queued"}
    second = post(api, request)["deliveries"]
    assert [(d["channel"], d["reason"]) for d in second] == [("inapp", "duplicate")]
    assert "fallback chain stops" in explains(second[0])


def test_an_address_no_account_can_serve_is_not_planned(api):
    """The newest push token is for Web Push but only APNs is configured: the older APNs token
    is used; with only the Web Push token, push is unavailable for that recipient."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    factories.channel(name="apns", kind="push", backend="apns", options={
        "team_id": "ABCDE12345", "key_id": "KEY1234567", "bundle_id": "com.example.app"}, secrets={"private_key": key})
    template = factories.template(content={"push": {"title": "Hi {{ name }}", "body": "{{ code }}"}})
    both, web_only = factories.recipient(email=None), factories.recipient(email=None)
    ContactPoint.objects.create(recipient=both, kind="push", app="apns", address="a" * 64)
    for person in (both, web_only):
        ContactPoint.objects.create(recipient=person, kind="push", app="webpush",
                                    address='{"endpoint": "https://push.example.net/x", "keys": {}}')
    body = post(api, {"template": template.key, "to": [both.external_id, web_only.external_id],
                      "context": {"name": "A", "code": "1"}})
    planned = {d["recipient"]: d for d in body["deliveries"]}
    assert planned[both.external_id]["status"] == "queued"
    assert planned[both.external_id]["address"] == "a" * 64
    assert (planned[web_only.external_id]["status"], planned[web_only.external_id]["reason"]) == \
        ("skipped", "channel_unavailable")
    assert "serves the recipient's apps (webpush)" in explains(planned[web_only.external_id])
