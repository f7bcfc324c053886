"""Anymail tracking events -> receipts.

anymail's webhook views (mounted at ``/hooks/anymail/<esp>/tracking/``) check the shared
``WEBHOOK_SECRET`` and, where the ESP signs its webhooks, the signature; then they send the
``tracking`` signal with a normalised event. Here it becomes a :class:`Receipt`, applied like
any provider report: once per event id, forward only.
"""
from anymail.signals import tracking

from channels_app.base import Receipt
from channels_app.kinds import ChannelKind
from notifyhub.messaging.services.receipts import receipts_apply

#: anymail event type -> receipt status. ``deferred``, ``queued`` and ``sent`` change nothing.
EVENT_STATUS = {
    "delivered": "delivered",
    "bounced": "bounced",
    "rejected": "bounced",
    "complained": "complained",
    "failed": "failed",
    "opened": "opened",
    "clicked": "clicked",
}


def receipt_from_event(event) -> Receipt | None:
    status = EVENT_STATUS.get(event.event_type)
    if status is None or not event.message_id:
        return None
    detail = " ".join(str(part) for part in (event.reject_reason, event.description, event.mta_response) if part)
    if event.recipient:
        detail = f"{event.recipient} {detail}".strip()
    return Receipt(provider_message_id=str(event.message_id), status=status, event_id=event.event_id or "",
                   detail=detail[:1000], at=event.timestamp)


def on_tracking(sender, event, esp_name, **kwargs):
    receipt = receipt_from_event(event)
    if receipt is not None:
        receipts_apply(source=f"anymail.{esp_name.lower()}", receipts=[receipt], channel=ChannelKind.EMAIL)


def connect() -> None:
    tracking.connect(on_tracking, dispatch_uid="notifyhub.messaging.tracking")
