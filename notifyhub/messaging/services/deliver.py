"""Deliver: claim a batch of deliveries, send them through one backend, record the outcomes.

The claim is one conditional UPDATE (``queued`` or due ``pending`` -> ``sending``), so a task
that runs twice — a redelivered broker message, a sweeper re-enqueue — sends nothing twice.
Outcomes are written at least every ``FLUSH_SECONDS`` (and every ``FLUSH_EVERY`` sends), so a
worker killed mid-batch leaves only the sends of that last moment unrecorded, to be sent again;
a fast batch (in-app, concurrent HTTP) is still recorded in one write.
"""
import logging
import uuid

from django.db.models import F, Q
from django.utils import timezone

from channels_app.errors import ChannelConfigurationError, TransientChannelError
from channels_app.selectors import channel_configs_for
from channels_app.services import channel_backend_build
from notifyhub.messaging.models import Delivery, DeliveryStatus
from notifyhub.messaging.services.accounts import AccountSender, Flusher, outbound
from notifyhub.messaging.services.events import events_record
from notifyhub.messaging.services.outcomes import messages_rollup, outcomes_record
from notifyhub.messaging.services.rules import capped_recheck

logger = logging.getLogger(__name__)


def deliveries_claim(*, delivery_ids) -> list[Delivery]:
    """Move the given deliveries that are ready to ``sending`` and return them (two queries)."""
    now = timezone.now()
    token = uuid.uuid4()
    ready = Q(status=DeliveryStatus.QUEUED) | Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
    claimed = Delivery.objects.filter(ready, pk__in=list(delivery_ids)).update(
        status=DeliveryStatus.SENDING, claim_token=token, claimed_at=now, updated_at=now,
        attempts=F("attempts") + 1,
    )
    if not claimed:
        return []
    deliveries = list(Delivery.objects.filter(claim_token=token).select_related("message__template__category",
                                                                                "recipient"))
    for delivery in deliveries:
        delivery.claim_token_at_claim = token  # outcomes clear claim_token; the heartbeat still needs it
    return deliveries


def deliveries_send(*, delivery_ids) -> int:
    """Send what can be claimed of ``delivery_ids``; returns how many were claimed."""
    deliveries = deliveries_claim(delivery_ids=delivery_ids)
    if not deliveries:
        return 0
    events_record(changes=((d.id, DeliveryStatus.SENDING, f"attempt {d.attempts}") for d in deliveries))
    ready, waiting = capped_recheck(deliveries)
    if waiting:
        outcomes_record(deliveries=[d for d in deliveries if d.id in waiting], outcomes=waiting, config_id=None)
    groups: dict[tuple[str, str], list[Delivery]] = {}
    for delivery in ready:
        groups.setdefault((delivery.channel, delivery.app), []).append(delivery)
    for (channel, app), group in groups.items():
        _send_group(channel, app, group)
    messages_rollup(message_ids={d.message_id for d in deliveries})
    return len(deliveries)


def _send_group(channel: str, app: str, deliveries: list[Delivery]) -> None:
    configs = channel_configs_for(kind=channel, app=app)
    if not configs:  # an account-free backend (in-app), or nothing configured
        _send_default(channel, deliveries)
        return
    sender = AccountSender(configs)
    try:
        queue = [(d, frozenset()) for d in deliveries]
        while queue:
            queue = sender.round(queue)
    finally:
        sender.close()


def _send_default(channel: str, deliveries: list[Delivery]) -> None:
    by_id = {str(d.id): d for d in deliveries}
    try:
        backend = channel_backend_build(kind=channel, config=None)
    except ChannelConfigurationError as exc:
        logger.error("Cannot send %d %s deliveries: %s", len(deliveries), channel, exc)
        error = TransientChannelError(str(exc), code="configuration_error")
        outcomes_record(deliveries=deliveries, outcomes={d.id: error for d in deliveries}, config_id=None)
        return
    flusher = Flusher(by_id, config_id=None)
    try:
        with backend:
            for message, outcome in backend.send_many(outbound(d) for d in deliveries):
                flusher.add(message.delivery_id, outcome)
    except Exception as exc:  # a backend bug must not strand the batch in "sending"
        logger.exception("Backend %s failed unexpectedly", backend.name)
        flusher.fail_rest(TransientChannelError(f"{exc.__class__.__name__}: {exc}", code="backend_error"))
    finally:
        flusher.flush()
