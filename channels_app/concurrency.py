"""The one concurrency harness for HTTP backends: a batch's sends run in a bounded thread
pool and each message's outcome, whatever happened, is yielded as soon as it is known.

Why one harness: the hub records every yielded outcome and, if the generator itself raises,
marks everything not yet yielded for retry. A bug in one send (a ``KeyError`` on an odd
provider answer) must therefore become that delivery's outcome, never escape: otherwise the
requests that already went out on the other threads are sent again.
"""
import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed

from django.conf import settings

from channels_app.errors import AccountError, ChannelConfigurationError, ChannelError, TransientChannelError
from channels_app.message import OutboundMessage, SendResult

logger = logging.getLogger(__name__)

Outcome = SendResult | ChannelError


def outcome_of(send: Callable[[OutboundMessage], SendResult], message: OutboundMessage) -> Outcome:
    """Call ``send``; return its result or the error it raised, as an outcome.

    A broken account (``ChannelConfigurationError``) fails the delivery on this account the
    way the hub fails a whole batch whose ``open()`` found the account broken; any other
    unexpected exception is a transient ``backend_error`` carrying the error text, retried
    within the delivery's attempt cap.
    """
    try:
        return send(message)
    except ChannelError as error:
        return error
    except ChannelConfigurationError as exc:
        return AccountError(f"The account is misconfigured: {exc}", code="configuration_error")
    except Exception as exc:
        logger.exception("Backend failed unexpectedly sending delivery %s", message.delivery_id)
        return TransientChannelError(f"{exc.__class__.__name__}: {exc}", code="backend_error")


def send_sequentially(send, messages: Iterable[OutboundMessage]) -> Iterator[tuple[OutboundMessage, Outcome]]:
    for message in messages:
        yield message, outcome_of(send, message)


def send_concurrently(send, messages: Iterable[OutboundMessage], *, name: str = "send",
                      workers: int | None = None) -> Iterator[tuple[OutboundMessage, Outcome]]:
    """Run ``send`` for each message on up to ``workers`` threads (the HTTP pool size by
    default); yield ``(message, outcome)`` in completion order. Never raises for one message."""
    messages = list(messages)
    if len(messages) <= 1:
        yield from send_sequentially(send, messages)
        return
    workers = min(workers or settings.NOTIFYHUB_HTTP_CONCURRENCY, len(messages))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"send-{name}") as pool:
        futures = {pool.submit(outcome_of, send, message): message for message in messages}
        for future in as_completed(futures):
            yield futures[future], future.result()


class ConcurrentSendMixin:
    """``send_many`` for backends whose sends may run in parallel over one client."""

    def send_many(self, messages: Iterable[OutboundMessage]) -> Iterator[tuple[OutboundMessage, Outcome]]:
        """Send concurrently over the backend's shared client; yield outcomes as they complete."""
        self.open()
        yield from send_concurrently(self.send, messages, name=self.name)
