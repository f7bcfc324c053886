"""The pipeline at broadcast scale: no recipient lost, nothing sent twice, cost per batch.

Each test reproduces a finding of the integrity review (issue 8) on PostgreSQL, Redis and, where
the finding involves them, real worker processes.
"""
import json
import threading
import time
import uuid
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from werkzeug.wrappers import Response

from channels_app.message import SendResult
from notifyhub.messaging import limits
from notifyhub.messaging.models import Delivery, DeliveryEvent, Message
from notifyhub.messaging.services.accept import message_accept
from notifyhub.messaging.services.claim import deliveries_claim
from notifyhub.messaging.services.deliver import deliveries_send
from notifyhub.messaging.services.outcomes import outcomes_record
from notifyhub.messaging.services.rollup import messages_rollup
from notifyhub.messaging.services.rules import reservations_guard
from notifyhub.messaging.services.sweeper import stuck_sweep
from preferences.models import ContactPoint, Recipient
from tests import factories
from tests.conftest import wait_until

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]
REDIS_URL = settings.REDIS_URL
FINAL = {"sent", "delivered", "failed", "skipped", "cancelled", "bounced"}


def send(api, body, status=202):
    response = api.post("/api/v1/messages", data=json.dumps(body), content_type="application/json")
    assert response.status_code == status, response.content
    return response.json()


def statuses(message_id) -> dict:
    counts: dict = {}
    for status, reason in Delivery.objects.filter(message_id=message_id).values_list("status", "reason"):
        counts[(status, reason)] = counts.get((status, reason), 0) + 1
    return counts


def all_final(message_id, expected: int | None = None) -> bool:
    rows = list(Delivery.objects.filter(message_id=message_id).values_list("status", flat=True))
    if expected is not None and len(rows) != expected:
        return False
    return bool(rows) and all(s in FINAL for s in rows)


def recipients_bulk(n: int, prefix: str | None = None) -> list[str]:
    prefix = prefix or uuid.uuid4().hex[:8]
    rows = Recipient.objects.bulk_create([Recipient(external_id=f"{prefix}-{i}", name=f"R {i}") for i in range(n)])
    return [r.external_id for r in rows]


# --- 1. one recipient's bad data fails that recipient only -----------------------------------------
def test_one_recipients_render_error_fails_only_that_recipient(api, start_worker):
    body_source = "{{ 10 / (recipient.data.n|default(1)) }}"
    template = factories.template(variables=[], content={"inapp": {"title": "t", "body": body_source}})
    to = [{"external_id": f"div-{i}", "data": {"n": 0 if i == 50 else 2}} for i in range(101)]
    body = send(api, {"template": template.key, "to": to, "context": {}})
    start_worker()
    wait_until(lambda: all_final(body["id"], 101), timeout=60, message="every recipient to end")
    counts = statuses(body["id"])
    assert counts == {("sent", ""): 100, ("failed", "render_error"): 1}
    failed = Delivery.objects.get(message_id=body["id"], status="failed")
    assert failed.recipient.external_id == "div-50"
    assert any("ZeroDivisionError" in line or "division by zero" in line for line in failed.explain), failed.explain
    wait_until(lambda: Message.objects.get(pk=body["id"]).status == "partial", timeout=10, message="roll-up")


@pytest.mark.parametrize("body", [
    "{{ recipient.data.get('items', [1])|first }}",  # TypeError deep inside a filter
    "{{ (10 ** recipient.data.get('n', 1)) * 1.0 }}",  # OverflowError
])
def test_any_exception_while_planning_is_a_render_error(api, body):
    template = factories.template(variables=[], content={"inapp": {"title": "t", "body": body}})
    data = {"items": 5, "n": 400}
    recipient = Recipient.objects.create(external_id=f"x-{uuid.uuid4().hex[:6]}", data=data)
    fine = Recipient.objects.create(external_id=f"y-{uuid.uuid4().hex[:6]}", data={"items": [1], "n": 1})
    message = message_accept(api_key=None, template=template, to=[recipient.external_id, fine.external_id],
                             context={})
    rows = {d.recipient_id: d for d in Delivery.objects.filter(message=message)}
    assert rows[recipient.pk].status == "failed" and rows[recipient.pk].reason == "render_error"
    assert rows[fine.pk].status == "queued"


# --- 2. durable dispatch ---------------------------------------------------------------------------
def test_flushed_broker_right_after_accept_still_delivers_every_recipient_once(api, start_worker):
    factories.inapp_channel()
    template = factories.template(content={"inapp": {"title": "Hi {{ name }}", "body": "b"}})
    ids = recipients_bulk(5000)
    body = send(api, {"template": template.key, "to": ids, "context": {"name": "A", "code": "1"}})
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # the dispatch task and everything after it are gone
    start_worker(concurrency=2)
    wait_until(lambda: all_final(body["id"], 5000), timeout=240, interval=1, message="all 5,000 deliveries")
    assert statuses(body["id"]) == {("sent", ""): 5000}
    wait_until(lambda: Message.objects.get(pk=body["id"]).status == "sent", timeout=20, message="roll-up")


def test_chunks_of_one_message_dispatch_side_by_side_without_deadlocks(api, start_worker):
    """Chunks hold their message FOR SHARE and never write it, so parallel chunks cannot deadlock."""
    from notifyhub.messaging.models import DispatchChunk

    factories.inapp_channel()
    template = factories.template(content={"inapp": {"title": "Hi {{ name }}", "body": "b"}})
    ids = recipients_bulk(4000)
    start_worker(concurrency=4, NOTIFYHUB_DISPATCH_CHUNK_SIZE="200")
    body = send(api, {"template": template.key, "to": ids, "context": {"name": "A", "code": "1"}})
    wait_until(lambda: all_final(body["id"], 4000), timeout=180, interval=1, message="all 4,000 deliveries")
    chunks = list(DispatchChunk.objects.filter(message_id=body["id"]).values_list("status", "attempts", "last_error"))
    assert len(chunks) == 20 and all(c == ("done", 0, "") for c in chunks), chunks
    assert statuses(body["id"]) == {("sent", ""): 4000}


def test_a_chunk_waits_out_a_redis_outage_and_completes_when_it_is_back(api, start_worker, settings):
    """Planning needs Redis (the dedup check). While it is down the chunk is retried with backoff
    and nobody is failed; a worker that can reach Redis then completes it."""
    from notifyhub.messaging.models import DispatchChunk

    factories.inapp_channel()
    template = factories.template(content={"inapp": {"title": "Hi {{ name }}", "body": "b"}},
                                  dedup_window_seconds=60)
    ids = recipients_bulk(150)
    blind = start_worker(name="blind", REDIS_URL="redis://127.0.0.1:1/0", CELERY_BROKER_URL=settings.REDIS_URL,
                         NOTIFYHUB_CHUNK_MAX_ATTEMPTS="1")
    body = send(api, {"template": template.key, "to": ids, "context": {"name": "A", "code": "1"}})
    wait_until(lambda: DispatchChunk.objects.filter(message_id=body["id"]).exclude(last_error="").exists(),
               timeout=60, message="the chunk to fail on the outage")
    blind.stop()
    [chunk] = DispatchChunk.objects.filter(message_id=body["id"])
    assert chunk.status == "pending" and chunk.attempts == 0 and "Connection" in chunk.last_error
    assert not Delivery.objects.filter(message_id=body["id"]).exists()
    start_worker(name="sighted", NOTIFYHUB_CHUNK_MAX_ATTEMPTS="1")
    wait_until(lambda: all_final(body["id"], 150), timeout=90, message="the chunk once Redis is back")
    assert statuses(body["id"]) == {("sent", ""): 150}


def test_a_chunk_that_keeps_failing_for_other_reasons_fails_its_recipients(settings):
    """Not an outage (a bug, bad data outside one recipient): bounded attempts, then every
    recipient of the chunk gets a final ``dispatch_error`` delivery and the message ends."""
    from notifyhub.messaging.models import DispatchChunk
    from notifyhub.messaging.services.dispatch import ChunkRetry, _chunk_failed, message_dispatch_start

    settings.NOTIFYHUB_CHUNK_MAX_ATTEMPTS = 2
    factories.inapp_channel()
    template = factories.template(content={"inapp": {"title": "t", "body": "b"}})
    ids = recipients_bulk(30)
    message = Message.objects.create(template=template, status="accepted", recipient_count=30)
    from notifyhub.messaging.models import MessageRecipient

    MessageRecipient.objects.bulk_create([MessageRecipient(message=message, recipient=r)
                                          for r in Recipient.objects.filter(external_id__in=ids)])
    message_dispatch_start(message_id=message.pk)
    [chunk] = DispatchChunk.objects.filter(message=message)
    with pytest.raises(ChunkRetry):
        _chunk_failed(chunk.pk, RuntimeError("a bug"))
    assert _chunk_failed(chunk.pk, RuntimeError("a bug")) == 30
    assert statuses(message.pk) == {("failed", "dispatch_error"): 30}
    assert DispatchChunk.objects.get(pk=chunk.pk).status == "failed"
    assert Message.objects.get(pk=message.pk).status == "failed"


# --- 3. the roll-up reads one row per message -------------------------------------------------------
def test_rollup_cost_does_not_grow_with_the_broadcast():
    template = factories.template()
    now = timezone.now()
    big = Message.objects.create(template=template, status="processing")
    done = Message.objects.create(template=template, status="processing")
    people = Recipient.objects.bulk_create([Recipient(external_id=f"roll-{i}-{uuid.uuid4().hex[:4]}")
                                            for i in range(3000)])
    Delivery.objects.bulk_create(
        [Delivery(message=big, recipient=p, channel="inapp", status="queued", created_at=now, updated_at=now)
         for p in people]
        + [Delivery(message=done, recipient=p, channel="inapp", status="sent" if i % 3 else "failed",
                    created_at=now, updated_at=now) for i, p in enumerate(people[:30])])
    with CaptureQueriesContext(connection) as queries:
        messages_rollup(message_ids=[big.pk, done.pk])
    selects = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]
    assert len(queries.captured_queries) <= 4, [q["sql"] for q in queries.captured_queries]
    for sql in selects:  # re-run each read: never more rows than messages touched
        with connection.cursor() as cursor:
            cursor.execute(sql)
            assert len(cursor.fetchall()) <= 2, sql
    assert Message.objects.get(pk=big.pk).status == "processing"
    assert Message.objects.get(pk=done.pk).status == "partial"


# --- 4. what a provider accepted is recorded before any bookkeeping ---------------------------------
def test_deleting_a_recipient_mid_batch_resends_nothing(api, start_worker, httpserver):
    received: list[str] = []
    deleted = threading.Event()

    def hook(request):
        received.append(request.headers["webhook-id"])
        if not deleted.is_set():
            deleted.set()
            try:
                Recipient.objects.filter(external_id="victim-5").delete()
            finally:
                connection.close()
        time.sleep(0.05)
        return Response("ok", status=200)

    httpserver.expect_request("/hook", method="POST").respond_with_handler(hook)
    factories.webhook_channel(httpserver.url_for("/hook"))
    template = factories.template(content={"webhook": {"payload": {"n": "{{ name }}"}}})
    people = [factories.recipient(external_id=f"victim-{i}") for i in range(10)]
    body = send(api, {"template": template.key, "to": [p.external_id for p in people] * 1,
                      "context": {"name": "A", "code": "1"}})
    start_worker()
    wait_until(lambda: all_final(body["id"], 9), timeout=60, message="the batch to end")
    time.sleep(8)  # the sweeper (3 s threshold in tests) has had every chance to resend
    assert len(received) == len(set(received)), f"sent twice: {sorted(received)}"
    assert len(received) >= 9
    assert set(Delivery.objects.filter(message_id=body["id"]).values_list("status", flat=True)) == {"sent"}


def test_redis_outage_during_fallback_planning_resends_nothing_and_falls_back_later(api, httpserver, settings):
    hits = []
    httpserver.expect_request("/hook", method="POST").respond_with_handler(
        lambda request: hits.append(1) or Response('{"error": "gone"}', status=400))
    factories.webhook_channel(httpserver.url_for("/hook"))
    factories.inapp_channel()
    template = factories.template(routing="fallback", fallback_chain=["webhook", "inapp"], dedup_window_seconds=60,
                                  content={"webhook": {"payload": {"a": 1}}, "inapp": {"title": "t", "body": "b"}})
    person = factories.recipient()
    message = message_accept(api_key=None, template=template, to=[person.external_id], context={"name": "A",
                                                                                                 "code": "1"})
    first = Delivery.objects.get(message=message)
    assert first.channel == "webhook" and first.status == "queued"
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # Redis is down while the outcome is recorded
    deliveries_send(delivery_ids=[first.pk])
    first.refresh_from_db()
    assert first.status == "failed" and first.followup == "fallback"
    assert not Delivery.objects.filter(message=message, channel="inapp").exists()
    settings.REDIS_URL = REDIS_URL  # Redis is back
    Delivery.objects.filter(pk=first.pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    stuck_sweep()
    first.refresh_from_db()
    assert first.followup == ""
    fallback = Delivery.objects.get(message=message, channel="inapp")
    assert fallback.fallback_from_id == first.pk and fallback.status == "queued"
    assert len(hits) == 1


# --- 6. cancel stops everything ---------------------------------------------------------------------
def test_cancel_mid_dispatch_sends_nothing_after_the_answer(api, start_worker, httpserver, settings):
    received: list[float] = []

    def hook(request):
        received.append(time.monotonic())
        time.sleep(0.01)
        return Response("ok", status=200)

    httpserver.expect_request("/hook", method="POST").respond_with_handler(hook)
    factories.webhook_channel(httpserver.url_for("/hook"))
    template = factories.template(content={"webhook": {"payload": {"n": "{{ name }}"}}})
    ids = recipients_bulk(3000)
    start_worker(concurrency=2, NOTIFYHUB_DISPATCH_CHUNK_SIZE="500")
    body = send(api, {"template": template.key, "to": ids, "context": {"name": "A", "code": "1"}})
    wait_until(lambda: received, timeout=60, interval=0.01, message="the first webhook")
    response = api.post(f"/api/v1/messages/{body['id']}/cancel")
    answered = time.monotonic()
    assert response.status_code == 200
    time.sleep(10)
    late = [t for t in received if t > answered]
    assert late == [], f"{len(late)} webhooks after the cancel answered"
    wait_until(lambda: all_final(body["id"]) and not Delivery.objects.filter(
        message_id=body["id"], status__in=["queued", "pending", "sending"]).exists(), timeout=30, message="final")
    counts = statuses(body["id"])
    sent = counts.get(("sent", ""), 0)
    assert sent == len(received) and sent < 3000
    assert Message.objects.get(pk=body["id"]).status == "cancelled"


def test_cancel_stops_a_group_sent_one_by_one(api, start_worker):
    """SMTP sends one mail after another over one connection: the cancel is seen mid-group."""
    from tests.conftest import SmtpSink

    sink = SmtpSink(delay=0.25)
    try:
        factories.smtp_channel(sink.port)
        template = factories.template(content={"email": {"subject": "s {{ name }}", "text": "t"}})
        people = [factories.recipient() for _ in range(60)]
        start_worker(concurrency=1)
        body = send(api, {"template": template.key, "to": [p.external_id for p in people],
                          "context": {"name": "A", "code": "1"}})
        wait_until(lambda: len(sink.messages) >= 2, timeout=60, interval=0.05, message="mails to flow")
        assert api.post(f"/api/v1/messages/{body['id']}/cancel").status_code == 200
        at_answer = len(sink.messages)
        time.sleep(4)
        assert len(sink.messages) == at_answer
        wait_until(lambda: not Delivery.objects.filter(message_id=body["id"], status__in=[
            "queued", "pending", "sending"]).exists(), timeout=30, message="every delivery final")
        assert statuses(body["id"]).get(("sent", ""), 0) == at_answer < 60
    finally:
        sink.stop()


def test_a_delivered_report_on_a_finished_broadcast_counts_nothing(api, client, settings):
    """sent → delivered cannot change a message's status: no roll-up, so a finished broadcast is
    not counted once per report."""
    from tests.test_tracking import AUTH_TOKEN, post_twilio, twilio_signature

    settings.NOTIFYHUB_PUBLIC_URL = "https://notify.example.com"
    account = factories.channel(name="twilio-main", kind="sms", backend="twilio", options={
        "account_sid": "AC" + "a" * 32, "from_number": "+15005550006", "api_base": "http://127.0.0.1:9"},
        secrets={"auth_token": AUTH_TOKEN})
    person = factories.recipient(phone="+8613800138010")
    template = factories.template(content={"sms": {"text": "Code {{ code }}"}})
    message = message_accept(api_key=None, template=template, to=[person.external_id],
                             context={"name": "A", "code": "1"})
    sid = "SM" + "8" * 32
    Delivery.objects.filter(message=message).update(status="sent", provider_message_id=sid, channel_config=account)
    Message.objects.filter(pk=message.pk).update(status="sent")
    params = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": "AC" + "a" * 32}
    with CaptureQueriesContext(connection) as queries:
        response = post_twilio(client, params, twilio_signature("https://notify.example.com/hooks/channels/"
                                                                "twilio-main/", params))
    assert response.status_code in (200, 204)
    assert Delivery.objects.get(message=message).status == "delivered"
    assert not [q for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]


# --- 7. dedup and cap units are given back ----------------------------------------------------------
@pytest.fixture
def limited(redis_uid):
    factories.inapp_channel()
    return redis_uid


def test_cancelled_messages_content_is_not_a_duplicate_later(api, limited):
    template = factories.template(dedup_window_seconds=600, content={"inapp": {"title": "t", "body": "same"}})
    person = factories.recipient()
    first = send(api, {"template": template.key, "to": [person.external_id], "context": {"name": "A", "code": "1"}})
    assert api.post(f"/api/v1/messages/{first['id']}/cancel").status_code == 200
    second = send(api, {"template": template.key, "to": [person.external_id], "context": {"name": "A", "code": "1"}})
    assert [d["status"] for d in second["deliveries"]] == ["queued"]


def test_a_delivery_refused_by_a_cap_gives_back_its_dedup_window(api, limited):
    category = factories.category(frequency_caps=[{"channel": "inapp", "limit": 1, "period": 86400}])
    template = factories.template(category=category, dedup_window_seconds=600, variables=["n"],
                                  content={"inapp": {"title": "t", "body": "{{ n }}"}})
    person = factories.recipient()
    assert send(api, {"template": template.key, "to": [person.external_id], "context": {"n": "A"}})[
        "deliveries"][0]["status"] == "queued"
    capped = send(api, {"template": template.key, "to": [person.external_id], "context": {"n": "B"}})
    assert capped["deliveries"][0]["reason"] == "frequency_capped"
    category.frequency_caps = [{"channel": "inapp", "limit": 5, "period": 86400}]
    category.save()
    again = send(api, {"template": template.key, "to": [person.external_id], "context": {"n": "B"}})
    assert again["deliveries"][0]["status"] == "queued", again["deliveries"][0]


def test_second_cap_refusing_gives_back_the_first_caps_unit(api, limited):
    category = factories.category(frequency_caps=[{"channel": "inapp", "limit": 5, "period": 86400},
                                                  {"channel": "inapp", "limit": 1, "period": 3600}])
    template = factories.template(category=category, content={"inapp": {"title": "t", "body": "b"}})
    person = factories.recipient()
    for _ in range(3):
        send(api, {"template": template.key, "to": [person.external_id], "context": {"name": "A", "code": "1"}})
    daily = limits.frequency_cap_peek(recipient_id=person.pk, category=category.key, channel="inapp@86400",
                                      limit=5, period_seconds=86400, token="probe")
    assert daily.count == 2  # one take (the first send) plus this probe; the refused two gave theirs back


def test_an_accept_that_rolls_back_gives_back_its_reservations(limited):
    category = factories.category(frequency_caps=[{"channel": "inapp", "limit": 1, "period": 86400}])
    template = factories.template(category=category, dedup_window_seconds=600,
                                  content={"inapp": {"title": "t", "body": "b"}})
    person = factories.recipient()
    with pytest.raises(RuntimeError), reservations_guard(), transaction.atomic():
        message_accept(api_key=None, template=template, to=[person.external_id], context={"name": "A", "code": "1"})
        raise RuntimeError("the request failed after the accept")
    message = message_accept(api_key=None, template=template, to=[person.external_id],
                             context={"name": "A", "code": "1"})
    assert Delivery.objects.get(message=message).status == "queued"


# --- 8. rate-limited accounts never hold the worker -------------------------------------------------
def test_a_slow_account_does_not_starve_a_fast_one_of_the_same_kind(api, start_worker, httpserver):
    seen = {"slow": [], "fast": []}

    def hook(name):
        def handle(request):
            seen[name].append(time.monotonic())
            return Response("ok", status=200)
        return handle

    httpserver.expect_request("/slow", method="POST").respond_with_handler(hook("slow"))
    httpserver.expect_request("/fast", method="POST").respond_with_handler(hook("fast"))
    factories.webhook_channel(httpserver.url_for("/slow"), name="slow", rate_limit="1/s")
    factories.webhook_channel(httpserver.url_for("/fast"), name="fast")
    template = factories.template(content={"webhook": {"payload": {"n": "{{ name }}"}}})
    slow_ids, fast_ids = recipients_bulk(200, "slow"), recipients_bulk(100, "fast")
    for ids, app, path in ((slow_ids, "slow", "/slow"), (fast_ids, "fast", "/fast")):
        ContactPoint.objects.bulk_create([ContactPoint(recipient=r, kind="webhook", address=httpserver.url_for(path),
                                                       app=app) for r in Recipient.objects.filter(external_id__in=ids)])
    start_worker(concurrency=1)
    slow = send(api, {"template": template.key, "to": slow_ids, "context": {"name": "A", "code": "1"}})
    time.sleep(1)
    started = time.monotonic()
    fast = send(api, {"template": template.key, "to": fast_ids, "context": {"name": "A", "code": "1"}})
    wait_until(lambda: all_final(fast["id"], 100), timeout=30, message="the fast account's 100")
    assert len(seen["fast"]) == 100 and max(seen["fast"]) - started < 10
    before = len(seen["slow"])
    time.sleep(6)
    trickled = len(seen["slow"]) - before
    assert 3 <= trickled <= 8, trickled  # about one a second: progress, not a burst
    gaps = [b - a for a, b in zip(seen["slow"], seen["slow"][1:], strict=False)]
    assert min(gaps) >= 0.8, min(gaps)
    wait_until(lambda: Delivery.objects.filter(message_id=slow["id"], status="pending",
                                               explain__icontains="deferred 2×").exists(),
               timeout=30, message="a delivery deferred twice")
    again = Delivery.objects.filter(message_id=slow["id"], status="pending", explain__icontains="deferred 2×").first()
    assert sum(1 for line in again.explain if line.startswith("deferred ")) == 1
    assert not DeliveryEvent.objects.filter(delivery=again, status="pending").exists()


# --- 9. early provider reports ------------------------------------------------------------------------
def test_a_report_that_arrives_before_the_outcome_is_applied_when_it_is_recorded(api, client, settings):
    from tests.test_tracking import AUTH_TOKEN, post_twilio, twilio_signature

    settings.NOTIFYHUB_PUBLIC_URL = "https://notify.example.com"
    account = factories.channel(name="twilio-main", kind="sms", backend="twilio", options={
        "account_sid": "AC" + "a" * 32, "from_number": "+15005550006", "api_base": "http://127.0.0.1:9"},
        secrets={"auth_token": AUTH_TOKEN})
    person = factories.recipient(phone="+8613800138009")
    template = factories.template(content={"sms": {"text": "Code {{ code }}"}})
    message = message_accept(api_key=None, template=template, to=[person.external_id],
                             context={"name": "A", "code": "1"})
    [claimed] = deliveries_claim(delivery_ids=[Delivery.objects.get(message=message).pk])
    sid = "SM" + "9" * 32
    params = {"MessageSid": sid, "MessageStatus": "delivered", "AccountSid": "AC" + "a" * 32}
    url = "https://notify.example.com/hooks/channels/twilio-main/"
    response = post_twilio(client, params, twilio_signature(url, params))  # the report races the flush
    assert response.status_code in (200, 204)
    assert Delivery.objects.get(pk=claimed.pk).status == "sending"
    from notifyhub.messaging.services.followups import outcomes_settle

    outcomes_settle(deliveries=[claimed], outcomes={claimed.id: SendResult(provider_message_id=sid)},
                    config_id=account.pk)
    delivery = Delivery.objects.get(pk=claimed.pk)
    assert delivery.status == "delivered"
    assert DeliveryEvent.objects.filter(delivery=delivery, status="delivered").count() == 1


# --- 10. outcome writes respect the claim ----------------------------------------------------------
def test_a_stalled_worker_cannot_overwrite_the_second_claimant(api):
    factories.inapp_channel()
    template = factories.template(content={"inapp": {"title": "t", "body": "b"}})
    person = factories.recipient()
    message = message_accept(api_key=None, template=template, to=[person.external_id],
                             context={"name": "A", "code": "1"})
    pk = Delivery.objects.get(message=message).pk
    [stalled] = deliveries_claim(delivery_ids=[pk])
    Delivery.objects.filter(pk=pk).update(claimed_at=timezone.now() - timedelta(minutes=5))
    stuck_sweep()  # the stalled claim is taken away and re-queued
    [second] = deliveries_claim(delivery_ids=[pk])
    from channels_app.errors import PermanentChannelError

    late = outcomes_record(deliveries=[stalled], outcomes={stalled.id: PermanentChannelError("late", code="x")},
                           config_id=None)
    assert late.written == []
    assert Delivery.objects.get(pk=pk).status == "sending"
    outcomes_record(deliveries=[second], outcomes={second.id: SendResult(provider_message_id="p1")}, config_id=None)
    assert Delivery.objects.get(pk=pk).status == "sent"


def test_worker_lost_failures_fall_back(api, settings):
    settings.NOTIFYHUB_MAX_ATTEMPTS = 1
    factories.webhook_channel("http://127.0.0.1:9/hook")
    factories.inapp_channel()
    template = factories.template(routing="fallback", fallback_chain=["webhook", "inapp"],
                                  content={"webhook": {"payload": {"a": 1}}, "inapp": {"title": "t", "body": "b"}})
    person = factories.recipient()
    message = message_accept(api_key=None, template=template, to=[person.external_id],
                             context={"name": "A", "code": "1"})
    pk = Delivery.objects.get(message=message).pk
    deliveries_claim(delivery_ids=[pk])
    Delivery.objects.filter(pk=pk).update(claimed_at=timezone.now() - timedelta(minutes=5))
    stuck_sweep()
    lost = Delivery.objects.get(pk=pk)
    assert (lost.status, lost.reason) == ("failed", "worker_lost")
    Delivery.objects.filter(pk=pk).update(updated_at=timezone.now() - timedelta(minutes=5))
    stuck_sweep()
    fallback = Delivery.objects.get(message=message, channel="inapp")
    assert fallback.fallback_from_id == pk


def webhook_sink(httpserver, *, delay: float) -> tuple[list[str], object]:
    """A webhook account on a local sink that records each request's webhook-id, and a template."""
    seen: list[str] = []

    def hook(request):
        seen.append(request.headers["webhook-id"])
        time.sleep(delay)
        return Response("ok", status=200)

    httpserver.expect_request("/hook", method="POST").respond_with_handler(hook)
    factories.webhook_channel(httpserver.url_for("/hook"))
    return seen, factories.template(content={"webhook": {"payload": {"n": "{{ name }}"}}})


# --- 11/12. recovery after a kill, and the sweeper leaves a backlog alone ----------------------------
def test_sigkill_recovery_within_a_minute_with_default_heartbeat(api, start_worker, httpserver):
    seen, template = webhook_sink(httpserver, delay=0.02)
    ids = recipients_bulk(2000)
    defaults = {"NOTIFYHUB_STUCK_SECONDS": "30", "NOTIFYHUB_HEARTBEAT_SECONDS": "10", "NOTIFYHUB_SWEEP_SECONDS": "10",
                "NOTIFYHUB_QUEUED_CHECK_SECONDS": "30", "NOTIFYHUB_HTTP_CONCURRENCY": "4"}
    victim = start_worker(name="victim", concurrency=2, **defaults)
    body = send(api, {"template": template.key, "to": ids, "context": {"name": "A", "code": "1"}})
    wait_until(lambda: len(seen) >= 300, timeout=120, interval=0.05, message="sending to be under way")
    victim.kill()
    killed_at = time.monotonic()
    in_flight = Delivery.objects.filter(message_id=body["id"], status="sending").count()
    start_worker(name="rescuer", concurrency=2, **defaults)
    wait_until(lambda: not Delivery.objects.filter(message_id=body["id"], status="sending",
                                                   claimed_at__lt=timezone.now() - timedelta(seconds=40)).exists()
               and not Delivery.objects.filter(message_id=body["id"], status="sending").exclude(
                   attempts__gte=2).exists(),
               timeout=75, interval=0.5, message="the killed worker's deliveries to be re-queued")
    requeued_after = time.monotonic() - killed_at
    wait_until(lambda: all_final(body["id"], 2000), timeout=180, interval=1, message="every delivery to end")
    duplicates = len(seen) - len(set(seen))
    print(f"\nkill -9 with {in_flight} in flight: re-queued after {requeued_after:.1f}s, {duplicates} duplicates")
    assert requeued_after <= 60
    assert duplicates <= in_flight
    assert statuses(body["id"]) == {("sent", ""): 2000}
    assert {f"msg_{pk}" for pk in Delivery.objects.filter(message_id=body["id"]).values_list("pk", flat=True)} \
        == set(seen)  # a resend carries the same webhook-id


def test_lost_broker_messages_are_found_and_a_backlog_is_left_alone(api, start_worker, httpserver):
    seen, template = webhook_sink(httpserver, delay=0.4)
    messages = [send(api, {"template": template.key, "to": [{"external_id": f"lost-{i}"}],
                           "context": {"name": "A", "code": "1"}})["id"] for i in range(24)]
    worker = start_worker(concurrency=1)
    wait_until(lambda: len(seen) >= 3, timeout=60, message="sending to start")
    client = redis.Redis.from_url(settings.REDIS_URL)
    dropped = client.delete("deliver.webhook")  # the queued broker messages vanish
    assert dropped
    started = time.monotonic()
    wait_until(lambda: all(all_final(m, 1) for m in messages), timeout=120, interval=1,
               message="every delivery to end")
    print(f"\nlost broker messages: all final {time.monotonic() - started:.1f}s after the loss")
    assert len(seen) == len(set(seen)) == 24
    assert "Re-enqueued" in worker.output()


def test_a_long_backlog_drains_with_no_sweeper_reenqueue(api, start_worker):
    factories.inapp_channel()
    template = factories.template(content={"inapp": {"title": "Hi {{ name }}", "body": "b"}})
    ids = recipients_bulk(20000)
    body = send(api, {"template": template.key, "to": ids[:10000], "context": {"name": "A", "code": "1"}})
    body2 = send(api, {"template": template.key, "to": ids[10000:], "context": {"name": "A", "code": "1"}})
    worker = start_worker(concurrency=2)
    wait_until(lambda: all_final(body["id"], 10000) and all_final(body2["id"], 10000), timeout=400, interval=2,
               message="the backlog to drain")
    assert "Re-enqueued" not in worker.output()
    assert statuses(body["id"]) == {("sent", ""): 10000}


# --- in-app: claim, send and record in one transaction -------------------------------------------------
def test_inapp_batch_is_claimed_sent_and_recorded_in_one_transaction(api):
    from channels_app.models import InboxEntry

    factories.inapp_channel()
    category = factories.category(frequency_caps=[{"channel": "inapp", "limit": 1, "period": 86400}],
                                  over_cap="defer")
    template = factories.template(category=category, content={"inapp": {"title": "t", "body": "b"}})
    plain = factories.template(content={"inapp": {"title": "t", "body": "b"}})
    person, other = factories.recipient(), factories.recipient()
    capped_first = message_accept(api_key=None, template=template, to=[person.external_id],
                                  context={"name": "A", "code": "1"})
    capped = message_accept(api_key=None, template=template, to=[person.external_id],
                            context={"name": "A", "code": "1"})
    ready = message_accept(api_key=None, template=plain, to=[other.external_id], context={"name": "A", "code": "1"})
    rows = {m: Delivery.objects.get(message=m) for m in (capped_first, capped, ready)}
    deferred = rows[capped]
    assert deferred.status == "pending" and deferred.reason == "frequency_capped"
    Delivery.objects.filter(pk=deferred.pk).update(next_attempt_at=timezone.now())  # due: re-checked at claim
    with CaptureQueriesContext(connection) as queries:
        sent = deliveries_send(delivery_ids=[str(d.pk) for d in rows.values()], kind="inapp")
    assert sent == 3
    first, again, plain_row = (Delivery.objects.get(pk=rows[m].pk) for m in (capped_first, capped, ready))
    assert (first.status, plain_row.status) == ("sent", "sent")
    assert first.provider_message_id == str(first.pk) and first.claim_token is None
    assert again.status == "pending" and again.reason == "frequency_capped"  # the full path re-checked the cap
    assert InboxEntry.objects.filter(delivery_id__in=[first.pk, plain_row.pk]).count() == 2
    assert list(DeliveryEvent.objects.filter(delivery=first).values_list("status", flat=True).order_by("id")) == [
        "queued", "sending", "sent"]
    updates = [q["sql"] for q in queries.captured_queries
               if "UPDATE messaging_delivery AS d SET status = 'sent'" in q["sql"]]
    assert len(updates) == 1  # one statement wrote both in-app rows straight to sent
