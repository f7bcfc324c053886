"""Channels whose send is a write in the hub's own database (in-app): one transaction per batch.

For such a backend (``writes_hub_database``) there is no outside world to be ahead of: the
claim, the send (the inbox rows) and the outcome can commit together, so each delivery is
written once (``queued`` → ``sent`` in one UPDATE) and sent exactly once by construction. A
crash before the commit leaves the rows ``queued``, as if nothing had happened. Rows that need
the full path — a frequency-cap deferral to re-check, an account with a rate limit — are left to
:func:`.deliver.deliveries_send`.
"""
from django.db import connection, transaction
from django.utils import timezone

from channels_app.message import SendResult
from channels_app.registry import default_backend_for
from channels_app.selectors import channel_configs_for
from channels_app.services import channel_backend_build
from notifyhub.messaging.models import Delivery, DeliveryEvent, DeliveryStatus
from notifyhub.messaging.services.batch import outbound
from notifyhub.messaging.services.claim import claim_update
from notifyhub.messaging.services.rollup import messages_rollup


def instant_account(kind: str):
    """``(config or None)`` when ``kind`` can go the one-transaction way, else ``False``."""
    backend = default_backend_for(kind)
    if backend is None or not backend.writes_hub_database:
        return False
    configs = channel_configs_for(kind=kind)
    if not configs:
        return None
    if len(configs) > 1 or configs[0].rate_limit or not configs[0].backend_class.writes_hub_database:
        return False
    return configs[0]


def deliveries_send_instant(*, delivery_ids, config) -> set:
    """Claim, send and record what is ready in one transaction; returns the ids it handled."""
    if connection.vendor != "postgresql":
        return set()
    now = timezone.now()
    with transaction.atomic():
        deliveries = _claim_as_sent(list(delivery_ids), now, config)
        if not deliveries:
            return set()
        backend = channel_backend_build(kind=deliveries[0].channel, config=config)
        with backend:
            outcomes = [outcome for _, outcome in backend.send_many(outbound(d) for d in deliveries)]
        if len(outcomes) != len(deliveries) or not all(isinstance(o, SendResult) for o in outcomes):
            transaction.set_rollback(True)  # back to queued: the full path records each outcome
            return set()
        DeliveryEvent.objects.bulk_create(
            [DeliveryEvent(delivery_id=d.pk, status=status, detail=detail, at=now)
             for d in deliveries for status, detail in ((DeliveryStatus.SENDING, f"attempt {d.attempts}"),
                                                        (DeliveryStatus.SENT, f"attempt {d.attempts}: sent"))])
    messages_rollup(message_ids={d.message_id for d in deliveries})
    return {d.pk for d in deliveries}


def _claim_as_sent(ids: list, now, config) -> list[Delivery]:
    """Ready rows straight to ``sent`` (cap deferrals, which must be re-checked, are left out)."""
    return claim_update(ids, now, token=None, skip_reason="frequency_capped",
                        assign="status = %s, sent_at = %s, provider_message_id = d.id::text, "
                               "channel_config_id = %s, reason = '', next_attempt_at = NULL",
                        params=[DeliveryStatus.SENT, now, getattr(config, "pk", None)])
