"""Templates, categories and channel accounts (the ``manage`` scope)."""
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from rest_framework import serializers

from channels_app.kinds import ChannelKind
from channels_app.models import ChannelConfig
from channels_app.option_checks import anymail_credential_errors, unknown_option_errors
from channels_app.registry import all_backends
from channels_app.services import channel_config_save
from notifyhub.api.fields import StrictBooleanField, StrictCharField, StrictChoiceField, StrictIntegerField
from notifyhub.api.parsers import json_field_check
from notifyhub.api.serializers.base import RefuseUnknownFieldsMixin
from notifyhub.messaging.models import Template
from notifyhub.messaging.template_checks import template_content_check, template_routing_check
from preferences.models import Category


class UniqueFieldsMixin:
    """Every unique field of the model answers 400 naming the field when the value is taken —
    checked before writing, and again from the database's own constraint when a concurrent
    write wins the race (the write runs in a savepoint, so the request's transaction survives)."""

    def _unique_fields(self):
        model = self.Meta.model
        return [f for f in model._meta.fields if f.unique and not f.primary_key and f.name in self.fields]

    def _taken(self, field) -> dict:
        return {field.name: [f"A {self.Meta.model._meta.verbose_name} with this {field.name} already exists."]}

    def to_internal_value(self, data):
        attrs = super().to_internal_value(data)
        for field in self._unique_fields():
            if field.name not in attrs:
                continue
            taken = self.Meta.model._default_manager.filter(**{field.name: attrs[field.name]})
            if self.instance is not None:
                taken = taken.exclude(pk=self.instance.pk)
            if taken.exists():
                raise serializers.ValidationError(self._taken(field))
        return attrs

    def _guarded(self, write, *args):
        try:
            with transaction.atomic():
                return write(*args)
        except IntegrityError as exc:
            constraint = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", "") or ""
            for field in self._unique_fields():
                if f"_{field.column}_" in f"{constraint}_" or not constraint:
                    raise serializers.ValidationError(self._taken(field)) from None
            raise serializers.ValidationError({"non_field_errors": ["Conflicts with an existing record."]}) from None

    def create(self, validated_data):
        return self._guarded(super().create, validated_data)

    def update(self, instance, validated_data):
        return self._guarded(super().update, instance, validated_data)


class CategorySerializer(RefuseUnknownFieldsMixin, UniqueFieldsMixin, serializers.ModelSerializer):
    key = serializers.SlugField(max_length=100)
    name = StrictCharField(max_length=200)
    critical = StrictBooleanField(required=False, default=False)

    class Meta:
        model = Category
        fields = ("key", "name", "description", "critical", "channel_defaults", "quiet_hours", "frequency_caps",
                  "over_cap")
        ref_name = "Category"

    def validate_frequency_caps(self, value):
        if not isinstance(value, list):
            raise serializers.ValidationError('Expected a list like [{"channel": "sms", "limit": 3, "period": 86400}].')
        for index, cap in enumerate(value):
            if not isinstance(cap, dict) or set(cap) != {"channel", "limit", "period"}:
                raise serializers.ValidationError(f"[{index}]: expected exactly channel, limit and period.")
            if cap["channel"] != "*" and cap["channel"] not in ChannelKind.values:
                raise serializers.ValidationError(f"[{index}].channel: a channel kind or \"*\".")
            for field in ("limit", "period"):
                if not isinstance(cap[field], int) or isinstance(cap[field], bool) or cap[field] < 1:
                    raise serializers.ValidationError(f"[{index}].{field}: a positive integer.")
        return value

    def validate_channel_defaults(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Expected an object of channel kind to true/false.")
        for kind, enabled in value.items():
            if kind not in ChannelKind.values:
                raise serializers.ValidationError(f"Unknown channel kind {kind!r}.")
            if not isinstance(enabled, bool):
                raise serializers.ValidationError(f"{kind}: expected true or false.")
        return value


class TemplateSerializer(RefuseUnknownFieldsMixin, UniqueFieldsMixin, serializers.ModelSerializer):
    category = serializers.SlugRelatedField(slug_field="key", queryset=Category.objects.all())
    name = StrictCharField(max_length=200)
    variables = serializers.ListField(child=StrictCharField(max_length=100), required=False, default=list)
    content = serializers.DictField(validators=[json_field_check],
                                    help_text="Per channel kind: the parts to render.")
    translations = serializers.DictField(validators=[json_field_check], required=False, default=dict)
    sample_context = serializers.DictField(validators=[json_field_check], required=False, default=dict)
    active = StrictBooleanField(required=False, default=True)

    fallback_chain = serializers.ListField(child=StrictChoiceField(choices=ChannelKind.choices), required=False,
                                           default=list)

    class Meta:
        model = Template
        fields = ("key", "name", "category", "variables", "content", "translations", "sample_context",
                  "routing", "fallback_chain", "fallback_timeout_seconds", "dedup_window_seconds",
                  "active", "created_at", "updated_at")
        read_only_fields = ("created_at", "updated_at")
        ref_name = "Template"

    def validate(self, attrs):
        try:
            template_content_check(
                content=attrs.get("content", getattr(self.instance, "content", {})),
                translations=attrs.get("translations", getattr(self.instance, "translations", {})),
                variables=attrs.get("variables", getattr(self.instance, "variables", [])),
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        try:
            template_routing_check(
                routing=attrs.get("routing", getattr(self.instance, "routing", "all")),
                fallback_chain=attrs.get("fallback_chain", getattr(self.instance, "fallback_chain", [])),
                content=attrs.get("content", getattr(self.instance, "content", {})),
            )
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None
        return attrs


class ChannelConfigSerializer(RefuseUnknownFieldsMixin, UniqueFieldsMixin, serializers.ModelSerializer):
    name = StrictCharField(max_length=100)
    kind = StrictChoiceField(choices=ChannelKind.choices)
    backend = StrictChoiceField(choices=[])
    options = serializers.DictField(required=False, default=dict, validators=[json_field_check],
                                    help_text="Non-secret options of the backend.")
    secrets = serializers.DictField(validators=[json_field_check],
        write_only=True, required=False, default=dict,
        help_text="Secret options (passwords, tokens). Write-only; omitted keys keep their value.",
    )
    secrets_set = serializers.SerializerMethodField(help_text="Secret option names that are set, masked.")
    enabled = StrictBooleanField(required=False, default=True)
    priority = StrictIntegerField(required=False, default=100)
    weight = StrictIntegerField(required=False, default=1, min_value=1)
    rate_limit = StrictCharField(required=False, allow_blank=True, default="", max_length=20)
    failure_threshold = StrictIntegerField(required=False, default=5, min_value=1)
    open_seconds = StrictIntegerField(required=False, default=60, min_value=1)
    breaker = serializers.SerializerMethodField(help_text="Circuit breaker: state, failures, reopen_at.")

    class Meta:
        model = ChannelConfig
        fields = ("name", "kind", "backend", "options", "secrets", "secrets_set", "enabled", "priority", "weight",
                  "rate_limit", "failure_threshold", "open_seconds", "breaker", "created_at", "updated_at")
        read_only_fields = ("created_at", "updated_at")
        ref_name = "ChannelConfig"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["backend"].choices = sorted(all_backends())

    def get_secrets_set(self, obj) -> dict[str, str]:
        return obj.masked_secrets()

    def get_breaker(self, obj) -> dict:
        from channels_app.breaker import breaker_state

        state = breaker_state(obj.pk)
        return {key: value.isoformat() if hasattr(value, "isoformat") else value for key, value in state.items()}

    def validate(self, attrs):
        backend = all_backends()[attrs.get("backend", getattr(self.instance, "backend", ""))]
        secret_names = backend.secret_fields
        options, secrets = dict(attrs.get("options", {})), dict(attrs.get("secrets", {}))
        misplaced = sorted(set(options) & secret_names)
        if misplaced:
            raise serializers.ValidationError({"options": [f"{', '.join(misplaced)} belong in secrets."]})
        unknown = sorted(set(secrets) - secret_names)
        if unknown:
            raise serializers.ValidationError({"secrets": [f"Not secret options of {backend.name}: "
                                                           f"{', '.join(unknown)}."]})
        unknown_options = unknown_option_errors(backend, options)
        if unknown_options:
            raise serializers.ValidationError({"options": unknown_options})
        merged = self._options_check(backend, options, secrets, partial="options" not in attrs)
        missing = anymail_credential_errors(backend, merged)
        if missing:
            raise serializers.ValidationError(
                {"secrets" if field in backend.secret_fields else "options": {field: messages}
                 for field, messages in missing.items()})
        return attrs

    def _options_check(self, backend, options: dict, secrets: dict, *, partial: bool) -> dict:
        """The backend's own schema, with errors nested under ``options`` or ``secrets`` by field."""
        stored_options = getattr(self.instance, "options", None) or {}
        stored_secrets = self.instance.secrets if self.instance is not None else {}
        merged = {**stored_secrets, **{k: v for k, v in secrets.items() if v not in ("", None)}}
        merged.update(stored_options if partial else {})
        merged.update(options)
        try:
            return backend.validate_options(merged)
        except serializers.ValidationError as exc:
            detail = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
            nested: dict = {}
            for field, messages in detail.items():
                group = "secrets" if field in backend.secret_fields else "options"
                nested.setdefault(group, {})[field] = messages
            raise serializers.ValidationError(nested) from None

    def _save(self, config: ChannelConfig, attrs: dict) -> ChannelConfig:
        secrets = attrs.pop("secrets", {})
        for field, value in attrs.items():
            setattr(config, field, value)
        try:
            return channel_config_save(config=config, secrets=secrets)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.message_dict) from None

    def create(self, validated_data):
        return self._save(ChannelConfig(), validated_data)

    def update(self, instance, validated_data):
        return self._save(instance, validated_data)
