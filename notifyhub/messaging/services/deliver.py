"""Deliver: claim a batch of deliveries, send them through their accounts, record the outcomes.

The claim (:mod:`.claim`) makes a repeated task harmless; a heartbeat keeps the claim alive while
the batch runs; outcomes are recorded as they come (:mod:`.batch`), each write guarded by the
claim; the message roll-up runs once per batch.
"""
import logging

from channels_app.errors import ChannelConfigurationError, TransientChannelError
from channels_app.selectors import channel_configs_for
from channels_app.services import channel_backend_build
from notifyhub.messaging.models import Delivery
from notifyhub.messaging.services.accounts import AccountSender
from notifyhub.messaging.services.batch import Flusher, send_group
from notifyhub.messaging.services.claim import Heartbeat, deliveries_claim
from notifyhub.messaging.services.followups import outcomes_settle
from notifyhub.messaging.services.instant import deliveries_send_instant, instant_account
from notifyhub.messaging.services.rollup import messages_rollup
from notifyhub.messaging.services.rules import capped_recheck

logger = logging.getLogger(__name__)


def deliveries_send(*, delivery_ids, kind: str = "") -> int:
    """Send what can be claimed of ``delivery_ids``; returns how many were claimed.

    ``kind`` (the channel kind of the batch's queue) lets a kind whose send is a write in the
    hub's database go the one-transaction way (:mod:`.instant`).
    """
    done = 0
    config = instant_account(kind) if kind else False
    if config is not False:
        handled = deliveries_send_instant(delivery_ids=delivery_ids, config=config)
        done = len(handled)
        handled = {str(pk) for pk in handled}
        delivery_ids = [pk for pk in delivery_ids if str(pk) not in handled]
        if not delivery_ids:
            return done
    deliveries = deliveries_claim(delivery_ids=delivery_ids)
    if not deliveries:
        return done
    with Heartbeat(deliveries[0].claim_token_at_claim):
        ready, waiting = capped_recheck(deliveries)
        if waiting:
            outcomes_settle(deliveries=[d for d in deliveries if d.id in waiting], outcomes=waiting, config_id=None)
        groups: dict[tuple[str, str], list[Delivery]] = {}
        for delivery in ready:
            groups.setdefault((delivery.channel, delivery.app), []).append(delivery)
        for (channel, app), group in groups.items():
            _send_group(channel, app, group)
    try:
        messages_rollup(message_ids={d.message_id for d in deliveries})
    except Exception:  # recomputed by the next batch, report or sweep of the message
        logger.exception("Roll-up after a batch failed")
    return done + len(deliveries)


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
        outcomes_settle(deliveries=deliveries, outcomes={d.id: error for d in deliveries}, config_id=None)
        return
    flusher = Flusher(by_id, config_id=None)
    try:
        with backend:
            for delivery_id, outcome in send_group(backend, deliveries):
                flusher.add(delivery_id, outcome)
    except Exception as exc:  # a backend bug must not strand the batch in "sending"
        logger.exception("Backend %s failed unexpectedly", backend.name)
        flusher.fail_rest(TransientChannelError(f"{exc.__class__.__name__}: {exc}", code="backend_error"))
    finally:
        flusher.flush()
