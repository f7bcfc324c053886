"""API keys (hashed by djangorestframework-api-key) with the scopes they grant."""
from django.core.exceptions import ValidationError
from django.db import models
from rest_framework_api_key.models import AbstractAPIKey, APIKeyManager


class Scope(models.TextChoices):
    SEND = "send", "send: send messages, upsert recipients and preferences"
    READ = "read", "read: read messages, recipients and preferences"
    MANAGE = "manage", "manage: templates, categories, channels, delete recipients"


def validate_scopes(value):
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise ValidationError("Scopes must be a list of names.")
    unknown = sorted(set(value) - set(Scope.values))
    if unknown:
        raise ValidationError(f"Unknown scopes: {', '.join(unknown)}. Known: {', '.join(Scope.values)}.")


class ApiKey(AbstractAPIKey):
    """A calling system's key. Only its hash is stored; the key itself is shown once."""

    scopes = models.JSONField(default=list, validators=[validate_scopes], help_text="send, read, manage")

    objects = APIKeyManager()

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    def has_scope(self, scope: str) -> bool:
        return scope in (self.scopes or [])
