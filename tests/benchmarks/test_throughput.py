"""Throughput of the full pipeline: API → dispatch → deliver, on PostgreSQL, Redis and real
Celery worker processes. Run with `make bench`; prints figures and the machine.

Sends 10,000 in-app deliveries and 2,000 webhook deliveries (to a local sink that answers 200)
and reports accepted→sent throughput and p50/p99 latency (delivery ``sent_at`` minus the
message's acceptance time).
"""
import json
import os
import platform
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.db.models import Max, Min

from notifyhub.messaging.models import Delivery, Message
from preferences.models import ContactPoint, Recipient
from tests import factories
from tests.conftest import wait_until

pytestmark = [pytest.mark.benchmark, pytest.mark.services, pytest.mark.django_db(transaction=True),
              pytest.mark.timeout(900)]

INAPP, WEBHOOK = 10_000, 2_000


class Sink(BaseHTTPRequestHandler):
    count = 0
    lock = threading.Lock()

    def do_POST(self):  # noqa: N802 — http.server's naming
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with Sink.lock:
            Sink.count += 1
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
               platform.processor())
    mem = next((line.split()[1] for line in meminfo if line.startswith("MemTotal")), "0")
    return f"{platform.node()} · {os.cpu_count()} cores {cpu} · {int(mem) // 1024 // 1024} GiB · " \
           f"Python {platform.python_version()} · {platform.system()} {platform.release()}"


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def test_pipeline_throughput(api, start_worker):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        factories.inapp_channel()
        factories.webhook_channel(f"http://127.0.0.1:{server.server_port}/hook")
        inapp = factories.template(content={"inapp": {"title": "Hi {{ name }}", "body": "Code {{ code }}"}})
        hook = factories.template(content={"webhook": {"payload": {"name": "{{ name }}", "code": "{{ code }}"}}})
        people = Recipient.objects.bulk_create([Recipient(external_id=f"bench-{i}", name=f"B {i}")
                                                for i in range(INAPP)])
        ContactPoint.objects.bulk_create([ContactPoint(recipient=r, kind="email", address=f"b{i}@example.com")
                                          for i, r in enumerate(people)])
        start_worker(name="bench", concurrency=4, NOTIFYHUB_STUCK_SECONDS=30, NOTIFYHUB_SWEEP_SECONDS=10,
                     NOTIFYHUB_QUEUED_CHECK_SECONDS=30, NOTIFYHUB_DUE_POLL_SECONDS=2)  # production timings

        started = time.monotonic()
        ids = []
        for template, count in ((inapp, INAPP), (hook, WEBHOOK)):
            response = api.post("/api/v1/messages", content_type="application/json", data=json.dumps({
                "template": template.key, "to": [f"bench-{i}" for i in range(count)],
                "context": {"name": "B", "code": "1"}}))
            assert response.status_code == 202, response.content
            ids.append(response.json()["id"])
        accepted = time.monotonic() - started
        total = INAPP + WEBHOOK
        wait_until(lambda: Delivery.objects.filter(message_id__in=ids, status="sent").count() == total,
                   timeout=800, interval=1, message="all deliveries sent")

        created = dict(Message.objects.filter(pk__in=ids).values_list("pk", "created_at"))
        rows = Delivery.objects.filter(message_id__in=ids).values_list("message_id", "channel", "sent_at")
        latency = {"inapp": [], "webhook": []}
        for message_id, channel, sent_at in rows:
            latency[channel].append((sent_at - created[message_id]).total_seconds())
        span = Delivery.objects.filter(message_id__in=ids).aggregate(first=Min("created_at"), last=Max("sent_at"))
        first_accept = min(created.values())
        elapsed = (span["last"] - first_accept).total_seconds()
        print(f"\nmachine: {machine()}")
        print(f"accepted {total} deliveries in {accepted:.2f}s (2 API calls)")
        print(f"accepted→sent: {total} deliveries in {elapsed:.1f}s = {total / elapsed:.0f} deliveries/s")
        for channel, values in latency.items():
            print(f"{channel:8s} n={len(values):6d}  p50={statistics.median(values):.2f}s  "
                  f"p99={percentile(values, 99):.2f}s  max={max(values):.2f}s")
        print(f"webhook sink received {Sink.count} requests")
        assert Sink.count == WEBHOOK
    finally:
        server.shutdown()
