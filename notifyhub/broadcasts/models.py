"""Audiences: topics and their subscribers, saved segments, CSV imports of recipients."""
from django.conf import settings
from django.core.files.storage import FileSystemStorage
from django.db import models

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
