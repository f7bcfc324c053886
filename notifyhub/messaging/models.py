"""Templates, messages, deliveries and the event timeline of each delivery."""
import uuid

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from channels_app.kinds import ChannelKind


class MessageStatus(models.TextChoices):
    SCHEDULED = "scheduled", "Scheduled (waiting for send_at)"
    ACCEPTED = "accepted", "Accepted (dispatch pending)"
    PROCESSING = "processing", "Processing"
    SENT = "sent", "Sent"
    PARTIAL = "partial", "Partly sent"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped (nothing to send)"
    CANCELLED = "cancelled", "Cancelled"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending (waiting for its time)"
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained (marked as spam)"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"
    CANCELLED = "cancelled", "Cancelled"


OPEN_DELIVERY_STATUSES = frozenset({DeliveryStatus.PENDING, DeliveryStatus.QUEUED, DeliveryStatus.SENDING})
SUCCESS_DELIVERY_STATUSES = frozenset({DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.COMPLAINED})
#: How far each state is along the line; a provider report only ever moves a delivery forward.
DELIVERY_PROGRESS = {
    DeliveryStatus.PENDING: 0, DeliveryStatus.QUEUED: 1, DeliveryStatus.SENDING: 2, DeliveryStatus.SENT: 3,
    DeliveryStatus.DELIVERED: 4, DeliveryStatus.FAILED: 5, DeliveryStatus.BOUNCED: 5,
    DeliveryStatus.COMPLAINED: 6, DeliveryStatus.SKIPPED: 9, DeliveryStatus.CANCELLED: 9,
}


class EventKind(models.TextChoices):
    """A timeline entry: a state the delivery entered, or engagement that changes no state."""

    PENDING = "pending", "Pending"
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    BOUNCED = "bounced", "Bounced"
    COMPLAINED = "complained", "Complained"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"
    CANCELLED = "cancelled", "Cancelled"
    OPENED = "opened", "Opened"
    CLICKED = "clicked", "Clicked"


class MessagePriority(models.TextChoices):
    NORMAL = "normal", "Normal (bulk lane unless the category is critical)"
    HIGH = "high", "High (transactional lane)"


class RoutingMode(models.TextChoices):
    ALL = "all", "Every allowed channel"
    FALLBACK = "fallback", "Fallback chain: the next channel only when the previous cannot deliver"

template_key_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9_.-]*$", "Use lower-case letters, digits, dots, dashes and underscores."
)


class Template(models.Model):
    """What to say, per channel kind, with declared variables the sender must supply."""

    key = models.CharField(max_length=100, unique=True, validators=[template_key_validator])
    name = models.CharField(max_length=200)
    category = models.ForeignKey("preferences.Category", on_delete=models.PROTECT, related_name="templates")
    variables = models.JSONField(default=list, blank=True, help_text='Required context keys, e.g. ["name", "code"].')
    content = models.JSONField(
        default=dict, blank=True,
        help_text='Per channel kind, e.g. {"email": {"subject": "...", "text": "...", "html": "..."}, '
                  '"inapp": {"title": "...", "body": "...", "url": "..."}, "webhook": {"payload": {...}}}.',
    )
    translations = models.JSONField(
        default=dict, blank=True,
        help_text='Per locale, content overriding the default, e.g. {"zh-CN": {"email": {...}}}.',
    )
    sample_context = models.JSONField(default=dict, blank=True, help_text="Context used for the admin preview.")
    routing = models.CharField(max_length=10, choices=RoutingMode.choices, default=RoutingMode.ALL)
    fallback_chain = models.JSONField(
        default=list, blank=True,
        help_text='For routing "fallback": channel kinds in order, e.g. ["push", "sms", "email"].',
    )
    fallback_timeout_seconds = models.PositiveIntegerField(
        default=0, help_text="Fall back when a channel that reports delivery has not reported it within this "
                             "many seconds after sending (0: only on failure).",
    )
    dedup_window_seconds = models.PositiveIntegerField(
        default=0, help_text="The same content to the same recipient and channel within this window is "
                             "skipped as a duplicate (0: no deduplication).",
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("key",)

    def __str__(self):
        return self.key

    @property
    def channels(self) -> list[str]:
        if self.routing == RoutingMode.FALLBACK and self.fallback_chain:
            return [kind for kind in self.fallback_chain if kind in (self.content or {})]
        return [kind for kind in ChannelKind.values if kind in (self.content or {})]


class Message(models.Model):
    """One send request: a template, a context and a set of recipients."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    template = models.ForeignKey(Template, on_delete=models.PROTECT, related_name="messages")
    context = models.JSONField(default=dict, blank=True)
    api_key = models.ForeignKey(
        "clients.ApiKey", on_delete=models.SET_NULL, null=True, blank=True, related_name="messages"
    )
    idempotency_key = models.CharField(max_length=255, blank=True)
    channels = models.JSONField(default=list, blank=True, help_text="Requested kinds; empty means the template's.")
    send_at = models.DateTimeField(null=True, blank=True)
    priority = models.CharField(max_length=10, choices=MessagePriority.choices, default=MessagePriority.NORMAL)
    status = models.CharField(max_length=20, choices=MessageStatus.choices, default=MessageStatus.ACCEPTED)
    recipient_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        indexes = [
            models.Index(fields=("api_key", "-created_at")),
            models.Index(fields=("status", "send_at")),
        ]

    def __str__(self):
        return f"{self.template_id and self.template.key} {self.id}"


class MessageRecipient(models.Model):
    """The audience of a message, stored before dispatch so large sends can work in chunks."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="audience")
    recipient = models.ForeignKey("preferences.Recipient", on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=("message", "recipient"), name="message_recipient_unique")]

    def __str__(self):
        return f"{self.message_id} → {self.recipient_id}"


class Delivery(models.Model):
    """One message to one recipient on one channel kind; also the outbox row the sweeper watches."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="deliveries")
    recipient = models.ForeignKey("preferences.Recipient", on_delete=models.CASCADE, related_name="deliveries")
    channel = models.CharField(max_length=20, choices=ChannelKind.choices)
    address = models.CharField(max_length=2000, blank=True)
    app = models.CharField(max_length=100, blank=True, help_text="The contact point's app (push platform, appid).")
    lane = models.CharField(max_length=20, default="bulk", help_text="Queue lane: transactional or bulk.")
    fallback_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="The delivery on the previous channel of the fallback chain that could not deliver.",
    )
    fallback_at = models.DateTimeField(
        null=True, blank=True, help_text="If still not delivered then, fall back to the next channel.")
    channel_config = models.ForeignKey(
        "channels_app.ChannelConfig", on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="The provider account used.",
    )
    content = models.JSONField(default=dict, blank=True, help_text="Rendered content.")
    status = models.CharField(max_length=20, choices=DeliveryStatus.choices, default=DeliveryStatus.QUEUED)
    reason = models.CharField(max_length=100, blank=True, help_text="Why skipped, failed or retrying.")
    detail = models.TextField(blank=True, help_text="The provider's last answer.")
    explain = models.JSONField(default=list, blank=True, help_text="The decisions that led to this state.")
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_token = models.UUIDField(null=True, blank=True, editable=False)
    provider_message_id = models.CharField(max_length=255, blank=True)
    enqueue_id = models.UUIDField(
        null=True, blank=True, editable=False,
        help_text="The broker task that carries this delivery; the sweeper re-enqueues only when it is lost.")
    followup = models.CharField(
        max_length=20, blank=True,
        help_text="Bookkeeping still owed after the outcome was recorded (fallback, suppress); redone by the sweeper.")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("created_at", "id")
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=("message", "recipient", "channel"), name="delivery_unique_per_channel"),
        ]
        indexes = [
            models.Index(fields=("claim_token",), name="delivery_claim_token", condition=Q(claim_token__isnull=False)),
            models.Index(fields=("status", "next_attempt_at"), name="delivery_due",
                         condition=Q(status="pending")),
            models.Index(fields=("status", "updated_at"), name="delivery_open",
                         condition=Q(status__in=["queued", "sending"])),
            models.Index(fields=("message",), name="delivery_open_by_message",
                         condition=Q(status__in=["pending", "queued", "sending"])),
            models.Index(fields=("recipient", "-created_at")),
            models.Index(fields=("updated_at",), name="delivery_followup", condition=~Q(followup="")),
            models.Index(fields=("provider_message_id",), name="delivery_provider_id",
                         condition=~Q(provider_message_id="")),
            models.Index(fields=("message", "created_at", "id"), name="delivery_page_by_message"),
            models.Index(fields=("fallback_at",), name="delivery_fallback_due",
                         condition=Q(fallback_at__isnull=False)),
        ]

    def __str__(self):
        return f"{self.channel} → {self.address or self.recipient_id} ({self.status})"


class ChunkStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done"
    FAILED = "failed", "Failed (attempts exhausted; its recipients are failed)"


class DispatchChunk(models.Model):
    """One slice of a message's audience to plan, recorded before its task is enqueued.

    The row is the durable record of planned work: a chunk task that is lost or raises leaves the
    row ``pending``, and the sweeper enqueues it again after ``NOTIFYHUB_CHUNK_STALE_SECONDS``.
    """

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="chunks")
    first_id = models.BigIntegerField(help_text="First MessageRecipient id of the slice.")
    last_id = models.BigIntegerField(help_text="Last MessageRecipient id of the slice.")
    status = models.CharField(max_length=10, choices=ChunkStatus.choices, default=ChunkStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Failures other than outages.")
    last_error = models.TextField(blank=True)
    enqueue_id = models.UUIDField(null=True, blank=True, editable=False,
                                  help_text="The broker task that carries this chunk.")
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("message", "first_id")
        indexes = [models.Index(fields=("updated_at",), name="chunk_pending",
                                condition=Q(status="pending")),
                   models.Index(fields=("message",), name="chunk_pending_by_message",
                                condition=Q(status="pending"))]

    def __str__(self):
        return f"{self.message_id} [{self.first_id}..{self.last_id}] {self.status}"


class EarlyReceipt(models.Model):
    """A provider report that arrived before its delivery's outcome (and provider id) was written.

    Stored so the hook can acknowledge it safely; applied as soon as the outcome is recorded, and
    forgotten after ``NOTIFYHUB_EARLY_RECEIPT_HOURS`` if no delivery ever claims it.
    """

    source = models.CharField(max_length=100)
    provider_message_id = models.CharField(max_length=255, db_index=True)
    channel = models.CharField(max_length=20, blank=True)
    config_id = models.IntegerField(null=True, blank=True)
    status = models.CharField(max_length=20)
    event_id = models.CharField(max_length=255, blank=True)
    detail = models.TextField(blank=True)
    at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self):
        return f"{self.source} {self.status} {self.provider_message_id}"


class DeliveryEvent(models.Model):
    """One state change of a delivery; the whole list is its timeline."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=20, choices=EventKind.choices)
    detail = models.TextField(blank=True)
    external_id = models.CharField(
        max_length=255, blank=True, help_text="The provider's event id; a report is applied once.")

    class Meta:
        ordering = ("at", "id")
        constraints = [
            models.UniqueConstraint(fields=("external_id",), condition=~Q(external_id=""),
                                    name="delivery_event_external_unique"),
        ]

    def __str__(self):
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.status}"
