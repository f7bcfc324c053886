"""Audiences: topics and their subscribers, saved segments, CSV imports of recipients."""
from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.db import models

from notifyhub.messaging.models import MessagePriority
from preferences.models import Category, Recipient


def import_storage() -> FileSystemStorage:
    """Uploaded CSV files and their reject lists live under the var dir, never in the database."""
    return FileSystemStorage(location=settings.VAR_DIR / "imports")


class Topic(models.Model):
    """A named list recipients subscribe to ("release-notes", "outage-updates")."""

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    default_category = models.ForeignKey(
        Category, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="Category used by broadcasts to this topic when they name none.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("key",)

    def __str__(self):
        return self.name or self.key


class Subscription(models.Model):
    topic = models.ForeignKey(Topic, on_delete=models.CASCADE, related_name="subscriptions")
    recipient = models.ForeignKey(Recipient, on_delete=models.CASCADE, related_name="topic_subscriptions")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("topic", "recipient")
        constraints = [models.UniqueConstraint(fields=("topic", "recipient"), name="subscription_unique")]
        indexes = [models.Index(fields=("recipient",), name="subscription_recipient_idx")]

    def __str__(self):
        return f"{self.recipient_id} → {self.topic_id}"


class Segment(models.Model):
    """A saved filter over recipients, stored as JSON and compiled to one query at use time."""

    key = models.SlugField(max_length=100, unique=True)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    definition = models.JSONField(
        help_text='E.g. {"all": [{"field": "locale", "op": "=", "value": "zh-CN"}, '
                  '{"field": "data.vip_level", "op": ">=", "value": 3}]}',
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("key",)

    def __str__(self):
        return self.name or self.key


class ImportStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    DONE = "done", "Done"
    FAILED = "failed", "Failed"


class Import(models.Model):
    """One uploaded CSV file of recipients and the progress of the task that reads it."""

    file = models.FileField(storage=import_storage, upload_to="uploads/%Y/%m/")
    original_name = models.CharField(max_length=255, blank=True)
    size_bytes = models.BigIntegerField(default=0)
    bytes_read = models.BigIntegerField(default=0)
    status = models.CharField(max_length=10, choices=ImportStatus.choices, default=ImportStatus.QUEUED)
    encoding = models.CharField(max_length=20, blank=True)
    delimiter = models.CharField(max_length=5, blank=True)
    rows_read = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True, help_text="Why the whole file failed (bad header, unreadable file).")
    rejects_file = models.FileField(storage=import_storage, upload_to="rejects/%Y/%m/", blank=True)
    api_key = models.ForeignKey("clients.ApiKey", on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self):
        return f"Import {self.pk}: {self.original_name or self.file.name}"

    @property
    def progress_percent(self) -> int:
        if self.status in (ImportStatus.DONE, ImportStatus.FAILED):
            return 100
        if not self.size_bytes:
            return 0
        return min(99, int(100 * self.bytes_read / self.size_bytes))


class BroadcastStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SCHEDULED = "scheduled", "Scheduled"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    PAUSED = "paused", "Paused"
    CANCELLED = "cancelled", "Cancelled"


class ScheduleKind(models.TextChoices):
    NOW = "now", "Now"
    ONCE = "once", "Once, at a time"
    CRON = "cron", "Recurring: cron expression"
    INTERVAL = "interval", "Recurring: every N minutes/hours/days"


class IntervalUnit(models.TextChoices):
    MINUTES = "minutes", "Minutes"
    HOURS = "hours", "Hours"
    DAYS = "days", "Days"


class Broadcast(models.Model):
    """A template sent to an audience resolved at each run: now, once, or on a schedule.

    notifyhub owns the beat entry (``periodic_task``): it is created, changed and removed by the
    broadcast services, never by hand.
    """

    name = models.CharField(max_length=200)
    template = models.ForeignKey("messaging.Template", on_delete=models.PROTECT, related_name="+")
    topics = models.ManyToManyField(Topic, blank=True, related_name="broadcasts")
    segment = models.ForeignKey(Segment, on_delete=models.PROTECT, null=True, blank=True, related_name="broadcasts")
    all_recipients = models.BooleanField(default=False, help_text="Every recipient (needs a confirmation).")
    context = models.JSONField(default=dict, blank=True)
    channels = models.JSONField(default=list, blank=True, help_text="Only these channel kinds; empty: all.")
    priority = models.CharField(max_length=10, choices=MessagePriority.choices, default=MessagePriority.NORMAL)
    schedule = models.CharField(max_length=10, choices=ScheduleKind.choices, default=ScheduleKind.NOW)
    send_at = models.DateTimeField(null=True, blank=True, help_text="For once: when.")
    cron = models.CharField(max_length=100, blank=True, help_text="For cron: minute hour day month weekday.")
    interval_every = models.PositiveIntegerField(null=True, blank=True)
    interval_unit = models.CharField(max_length=10, choices=IntervalUnit.choices, blank=True)
    timezone = models.CharField(max_length=64, default="UTC", help_text="IANA zone of the cron and of send_at.")
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=BroadcastStatus.choices, default=BroadcastStatus.DRAFT)
    periodic_task = models.OneToOneField("django_celery_beat.PeriodicTask", on_delete=models.SET_NULL, null=True,
                                         blank=True, related_name="+", editable=False)
    api_key = models.ForeignKey("clients.ApiKey", on_delete=models.SET_NULL, null=True, blank=True,
                                related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self):
        return self.name


class BroadcastRun(models.Model):
    """One run of a broadcast: the audience as it was then, sent as one Message."""

    broadcast = models.ForeignKey(Broadcast, on_delete=models.CASCADE, related_name="runs")
    message = models.OneToOneField("messaging.Message", on_delete=models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    recipient_count = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-started_at",)

    def __str__(self):
        return f"{self.broadcast} @ {self.started_at:%Y-%m-%d %H:%M}"
