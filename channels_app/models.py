"""Provider accounts (``ChannelConfig``) and the in-app inbox store."""
import uuid

from django.core.exceptions import ValidationError
from django.db import models
from rest_framework.exceptions import ValidationError as DRFValidationError

from channels_app import crypto
from channels_app.errors import ChannelConfigurationError
from channels_app.kinds import ChannelKind
from channels_app.registry import backend_class


def rate_validator(value: str) -> None:
    """The same grammar the sender parses, so a rate that saves is a rate that works."""
    from channels_app.ratelimit import rate_parse

    if value.strip().lower() in ("", "0", "none"):
        return
    try:
        rate = rate_parse(value)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None
    if rate.count < 1 or rate.period_seconds < 1:
        raise ValidationError(f"{value!r}: the count and the period must be at least 1.")


class ChannelConfig(models.Model):
    """A named provider account: which backend, its options and its encrypted secrets."""

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=20, choices=ChannelKind.choices, db_index=True)
    backend = models.CharField(max_length=100)
    options = models.JSONField(default=dict, blank=True)
    secrets_encrypted = models.TextField(blank=True, default="", editable=False)
    enabled = models.BooleanField(default=True)
    priority = models.IntegerField(default=100, help_text="Lower numbers are tried first.")
    weight = models.PositiveIntegerField(
        default=1, help_text="Accounts of equal priority share traffic in proportion to their weights.")
    rate_limit = models.CharField(
        max_length=20, blank=True, validators=[rate_validator],
        help_text='Sends allowed per period across all workers, e.g. "10/s", "20/m". '
                  'Blank: the provider\'s default; "0" or "none": unlimited.',
    )
    failure_threshold = models.PositiveIntegerField(
        default=5, help_text="Consecutive transient failures that open the circuit breaker.")
    open_seconds = models.PositiveIntegerField(
        default=60, help_text="How long an open breaker keeps traffic away before one probe is tried.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("kind", "priority", "name")
        verbose_name = "channel configuration"

    def __str__(self):
        return f"{self.name} ({self.backend})"

    @property
    def backend_class(self):
        return backend_class(self.backend)

    @property
    def secrets(self) -> dict:
        return crypto.decrypt_secrets(self.secrets_encrypted)

    def set_secrets(self, secrets: dict) -> None:
        self.secrets_encrypted = crypto.encrypt_secrets({k: v for k, v in secrets.items() if v not in ("", None)})

    def masked_secrets(self) -> dict:
        return {key: crypto.mask(value) for key, value in self.secrets.items()}

    def validated_options(self) -> dict:
        """Options and secrets merged and validated; raises ``ValidationError`` naming fields."""
        try:
            cls = self.backend_class
        except ChannelConfigurationError as exc:
            raise ValidationError({"backend": str(exc)}) from None
        if cls.kind != self.kind:
            raise ValidationError({"backend": f"{self.backend} is a {cls.kind} backend, not {self.kind}."})
        try:
            return cls.validate_options({**(self.options or {}), **self.secrets})
        except DRFValidationError as exc:
            errors: dict[str, list[str]] = {}
            for field, msgs in _flatten(exc.detail).items():  # every field's errors, not the last
                key = "options" if field != "non_field_errors" else "__all__"
                errors.setdefault(key, []).extend(f"{field}: {m}" for m in msgs)
            raise ValidationError(errors) from None

    def clean(self):
        self.validated_options()


def _flatten(detail) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {k: [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in detail.items()}
    return {"non_field_errors": [str(m) for m in detail]}


class InboxEntry(models.Model):
    """A message in a recipient's in-app inbox, written by the in-app backend."""

    recipient_key = models.CharField(max_length=255, db_index=True, help_text="Recipient external id.")
    delivery_id = models.UUIDField(unique=True, default=uuid.uuid4)
    title = models.CharField(max_length=500, blank=True)
    body = models.TextField(blank=True)
    url = models.CharField(max_length=2000, blank=True)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-created_at",)
        verbose_name_plural = "inbox entries"
        indexes = [models.Index(fields=("recipient_key", "-created_at"))]

    def __str__(self):
        return f"{self.recipient_key}: {self.title}"
