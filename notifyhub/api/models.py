"""Idempotency records for the send API."""
from django.db import models


class IdempotencyRecord(models.Model):
    """The first answer to a request carrying an ``Idempotency-Key``, per API key."""

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress"
        DONE = "done"

    api_key = models.ForeignKey("clients.ApiKey", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    state = models.CharField(max_length=20, choices=State.choices, default=State.IN_PROGRESS)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("api_key", "key"), name="idempotency_key_unique_per_client")]

    def __str__(self):
        return self.key
