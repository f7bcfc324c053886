"""The concurrency harness end to end: a third-party webhook backend (installed as a
distribution with a ``notifyhub.channels`` entry point, loaded by a real Celery worker) has a
bug for one recipient out of 20. That delivery ends ``failed`` after its attempts with the
``backend_error`` code and the error text; every other recipient's webhook arrives exactly once."""
import importlib
import json
import sys
import threading
import time
from collections import Counter

import pytest
from werkzeug import Response

from channels_app import registry
from channels_app.backends.webhook import generate_secret
from notifyhub.messaging.models import Delivery
from tests import factories
from tests.channels.test_registry import install_plugin
from tests.conftest import wait_until

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]

PLUGIN = """
    from channels_app.backends.webhook import WebhookBackend

    class BuggyWebhookBackend(WebhookBackend):
        name = "buggy_webhook"

        def send(self, message):
            if message.content["payload"]["who"] == "r-7":
                {}["missing"]  # a programming error in the plugin
            return super().send(message)
    """


@pytest.fixture
def buggy_plugin(tmp_path, monkeypatch):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    install_plugin(plugins, "nh_buggy_webhook", "nh_buggy_webhook", PLUGIN,
                   "[notifyhub.channels]\nbuggy_webhook = nh_buggy_webhook:BuggyWebhookBackend\n")
    monkeypatch.syspath_prepend(str(plugins))
    importlib.invalidate_caches()
    registry.all_backends.cache_clear()
    yield plugins
    registry.all_backends.cache_clear()
    sys.modules.pop("nh_buggy_webhook", None)


def test_a_backend_bug_fails_one_delivery_and_sends_the_others_once(api, start_worker, httpserver, buggy_plugin):
    received, lock = Counter(), threading.Lock()

    def hook(request):
        with lock:
            received[json.loads(request.get_data())["data"]["who"]] += 1
        time.sleep(0.05)  # keep the batch's sends in flight together
        return Response("", status=204)

    httpserver.expect_request("/hook", method="POST").respond_with_handler(hook)
    factories.channel(kind="webhook", backend="buggy_webhook", options={"url": httpserver.url_for("/hook"),
                                                                        "timeout": 5},
                     secrets={"signing_secret": generate_secret()})
    template = factories.template(content={"webhook": {"payload": {"who": "{{ recipient.external_id }}"}}})
    start_worker(PYTHONPATH=str(buggy_plugin), NOTIFYHUB_MAX_ATTEMPTS=2)
    response = api.post("/api/v1/messages", content_type="application/json", data=json.dumps(
        {"template": template.key, "to": [{"external_id": f"r-{i}"} for i in range(20)],
         "context": {"name": "A", "code": "1"}}))
    assert response.status_code == 202, response.content
    message_id = response.json()["id"]

    def finished():
        return set(Delivery.objects.filter(message_id=message_id).values_list("status", flat=True)) <= {
            "sent", "failed"} and Delivery.objects.filter(message_id=message_id).count() == 20

    wait_until(finished, timeout=90, message="every delivery final")
    rows = {d.recipient.external_id: d for d in Delivery.objects.filter(message_id=message_id)
            .select_related("recipient")}
    broken = rows.pop("r-7")
    # A transient backend_error that used up its attempts keeps that name as the reason.
    assert broken.status == "failed" and broken.reason == "backend_error" and broken.attempts == 2
    assert "KeyError: 'missing'" in broken.detail and "code=backend_error" in broken.detail
    assert {d.status for d in rows.values()} == {"sent"}
    assert received == Counter({f"r-{i}": 1 for i in range(20) if i != 7})
