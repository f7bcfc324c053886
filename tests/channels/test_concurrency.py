"""The shared concurrency harness: one unexpected exception in a concurrent batch is that
delivery's outcome, and every other send goes out exactly once (issue 8, finding 4).

The backend under test is a plugin defined here, the way a third-party package writes one:
an ``HttpChannelBackend`` that POSTs to a real pytest-httpserver sink and has a bug
(``KeyError``) for one address out of 100.
"""
import threading
import uuid
from collections import Counter

import pytest
from werkzeug import Response

from channels_app.backends.apns import ApnsBackend
from channels_app.base import ChannelBackend
from channels_app.concurrency import ConcurrentSendMixin
from channels_app.errors import ChannelConfigurationError, PermanentChannelError, TransientChannelError
from channels_app.http import HttpChannelBackend
from channels_app.message import OutboundMessage, SendResult

BUGGY = "addr-42"


class BuggySinkBackend(HttpChannelBackend):
    """POSTs each message's address to ``options['url']``; one address hits a bug."""

    kind = "webhook"
    name = "test_buggy_sink"

    def send(self, message: OutboundMessage) -> SendResult:
        if message.address == BUGGY:
            {}["missing"]  # a plain programming error, not a channel error
        response = self.post(self.options["url"], data=message.address)
        return SendResult(provider_message_id=response.text)


def messages(count: int = 100) -> list[OutboundMessage]:
    return [OutboundMessage(delivery_id=str(uuid.uuid4()), kind="webhook", address=f"addr-{i}",
                            content={}, metadata={}) for i in range(count)]


@pytest.fixture
def sink(httpserver):
    received, lock = Counter(), threading.Lock()

    def handler(request):
        address = request.get_data(as_text=True)
        with lock:
            received[address] += 1
        return Response(f"id-{address}", status=200)

    httpserver.expect_request("/sink", method="POST").respond_with_handler(handler)
    return received, httpserver.url_for("/sink")


def test_one_unexpected_exception_is_that_message_outcome_and_the_rest_go_out_once(sink):
    received, url = sink
    batch = messages()

    with BuggySinkBackend(options={"url": url}) as backend:
        outcomes = list(backend.send_many(batch))

    assert len(outcomes) == 100
    assert sorted(m.delivery_id for m, _ in outcomes) == sorted(m.delivery_id for m in batch)
    by_address = {m.address: o for m, o in outcomes}
    error = by_address.pop(BUGGY)
    assert isinstance(error, TransientChannelError)
    assert error.code == "backend_error"
    assert "KeyError" in str(error) and "missing" in str(error)
    assert all(isinstance(o, SendResult) and o.provider_message_id == f"id-{a}" for a, o in by_address.items())
    assert received == Counter({f"addr-{i}": 1 for i in range(100) if f"addr-{i}" != BUGGY})


def test_a_single_message_batch_also_yields_the_error(sink):
    _, url = sink
    with BuggySinkBackend(options={"url": url}) as backend:
        ((message, outcome),) = list(backend.send_many(messages(43)[42:]))
    assert message.address == BUGGY
    assert isinstance(outcome, TransientChannelError) and outcome.code == "backend_error"


class MisconfiguredBackend(ChannelBackend):
    kind = "webhook"
    name = "test_misconfigured"

    def send(self, message):
        if message.address == BUGGY:
            raise ChannelConfigurationError("no API key")
        return SendResult(provider_message_id=message.address)


def test_sequential_backends_share_the_rule_and_configuration_errors_fail_the_account():
    outcomes = dict((m.address, o) for m, o in MisconfiguredBackend().send_many(messages()))
    assert len(outcomes) == 100
    error = outcomes.pop(BUGGY)
    assert isinstance(error, PermanentChannelError) and error.code == "configuration_error"
    assert all(isinstance(o, SendResult) for o in outcomes.values())


def test_apns_uses_the_shared_harness():
    """The copy of the thread-pool loop in apns.py is gone: APNs inherits the one harness."""
    assert "send_many" not in ApnsBackend.__dict__
    assert ApnsBackend.send_many is ConcurrentSendMixin.send_many
    assert HttpChannelBackend.send_many is ConcurrentSendMixin.send_many
