"""Accept: validate a send request completely, then write the message in one transaction.

Small audiences (up to ``NOTIFYHUB_INLINE_DISPATCH_MAX``) are dispatched in the same
transaction, so the answer already lists the deliveries; larger ones are dispatched in chunks
by workers; a future ``send_at`` waits for the due-time dispatcher. ``dry_run`` runs the same
code and rolls everything back.
"""
from collections.abc import Sequence
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifyhub.messaging.models import Message, MessagePriority, MessageRecipient, MessageStatus, Template
from notifyhub.messaging.queueing import dispatch_enqueue
from notifyhub.messaging.rendering import RenderError, recipient_context, render_parts
from notifyhub.messaging.services.dispatch import message_dispatch_inline
from notifyhub.messaging.services.planning import DeliveryPlan, deliveries_plan
from notifyhub.messaging.services.rules import reservations_guard
from preferences.models import Recipient
from preferences.services import RecipientInput, recipients_upsert


class MessageRejected(Exception):
    """The request cannot be accepted; ``errors`` maps fields to messages, like a serializer."""

    def __init__(self, errors: dict):
        super().__init__(errors)
        self.errors = errors


def context_check(*, template: Template, context: dict) -> None:
    """Every declared variable present, and every channel's content renders with the context."""
    missing = [name for name in template.variables if name not in context]
    if missing:
        raise MessageRejected({"context": {name: [f"Required by template {template.key}."] for name in missing}})
    sample = {**context, "recipient": recipient_context(external_id="preview", name="", locale="", data={})}
    for channel, parts in (template.content or {}).items():
        try:
            render_parts(parts, sample)
        except RenderError as exc:
            raise MessageRejected({"context": [f"Template {template.key} ({channel}) cannot render: {exc}"]}) from None


def _recipients_resolve(to: Sequence[str | RecipientInput]) -> list[Recipient]:
    """Upsert inline recipients, look up bare ids; unknown bare ids are rejected by position."""
    bare = {item for item in to if isinstance(item, str)}
    known = Recipient.objects.in_bulk(list(bare), field_name="external_id") if bare else {}
    unknown = {
        str(index): [f"Unknown recipient {item!r}; send an object with contact details to create it."]
        for index, item in enumerate(to) if isinstance(item, str) and item not in known
    }
    if unknown:
        raise MessageRejected({"to": unknown})
    inline = [item for item in to if isinstance(item, RecipientInput)]
    if inline:
        known.update(recipients_upsert(items=inline))
    ordered, seen = [], set()
    for item in to:
        external_id = item if isinstance(item, str) else item.external_id
        if external_id not in seen:
            seen.add(external_id)
            ordered.append(known[external_id])
    return ordered


def message_accept(
    *, api_key, template: Template, to: Sequence[str | RecipientInput], context: dict,
    channels: Sequence[str] = (), send_at: datetime | None = None, idempotency_key: str = "",
    priority: str = MessagePriority.NORMAL,
) -> Message:
    """Write the message (and dispatch it inline when small) in one transaction.

    The dedup windows and cap units an inline dispatch reserves are given back if this
    transaction rolls back; a caller that wraps this in a larger transaction must wrap that in
    :func:`~notifyhub.messaging.services.rules.reservations_guard` too.
    """
    with reservations_guard(), transaction.atomic():
        return _message_accept(api_key=api_key, template=template, to=to, context=context, channels=channels,
                               send_at=send_at, idempotency_key=idempotency_key, priority=priority)


def _message_accept(*, api_key, template, to, context, channels, send_at, idempotency_key, priority) -> Message:
    context_check(template=template, context=context)
    recipients = _recipients_resolve(to)
    scheduled = send_at is not None and send_at > timezone.now()
    inline = not scheduled and len(recipients) <= settings.NOTIFYHUB_INLINE_DISPATCH_MAX
    message = Message.objects.create(
        template=template, context=context, api_key=api_key, idempotency_key=idempotency_key or "",
        channels=list(channels), send_at=send_at, recipient_count=len(recipients), priority=priority,
        status=MessageStatus.SCHEDULED if scheduled else (
            MessageStatus.PROCESSING if inline else MessageStatus.ACCEPTED),
    )
    MessageRecipient.objects.bulk_create(
        [MessageRecipient(message=message, recipient=recipient) for recipient in recipients]
    )
    if inline:
        message_dispatch_inline(message=message, recipients=recipients)
        message.refresh_from_db()
    elif not scheduled:
        dispatch_enqueue(message_id=message.pk)
    return message


def message_preview(
    *, template: Template, to: Sequence[str | RecipientInput], context: dict, channels: Sequence[str] = (),
    send_at: datetime | None = None, priority: str = MessagePriority.NORMAL,
) -> list[DeliveryPlan]:
    """What ``message_accept`` would decide and render, with nothing written (the dedup and
    frequency-cap counters are only read). Rules that depend on time judge at ``send_at``."""
    with transaction.atomic():
        context_check(template=template, context=context)
        recipients = _recipients_resolve(to)
        message = Message(template=template, context=context, channels=list(channels), send_at=send_at,
                          priority=priority)
        plans = deliveries_plan(message=message, recipients=recipients, reserve=False)
        transaction.set_rollback(True)
    return plans
