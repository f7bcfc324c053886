"""Templates, categories and channel accounts (the ``manage`` scope)."""
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from channels_app.kinds import ChannelKind
from channels_app.models import ChannelConfig
from channels_app.registry import all_backends
from channels_app.services import channel_config_save
from notifyhub.api.fields import StrictBooleanField, StrictCharField, StrictChoiceField, StrictIntegerField
from notifyhub.messaging.models import Template
from notifyhub.messaging.template_checks import template_content_check
from preferences.models import Category


class CategorySerializer(serializers.ModelSerializer):
    key = serializers.SlugField(max_length=100)
    name = StrictCharField(max_length=200)
    critical = StrictBooleanField(required=False, default=False)

    class Meta:
        model = Category
        fields = ("key", "name", "description", "critical", "channel_defaults")
        ref_name = "Category"

    def validate_channel_defaults(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("Expected an object of channel kind to true/false.")
        for kind, enabled in value.items():
            if kind not in ChannelKind.values:
                raise serializers.ValidationError(f"Unknown channel kind {kind!r}.")
            if not isinstance(enabled, bool):
                raise serializers.ValidationError(f"{kind}: expected true or false.")
        return value


class TemplateSerializer(serializers.ModelSerializer):
    category = serializers.SlugRelatedField(slug_field="key", queryset=Category.objects.all())
    name = StrictCharField(max_length=200)
    variables = serializers.ListField(child=StrictCharField(max_length=100), required=False, default=list)
    content = serializers.DictField(help_text="Per channel kind: the parts to render.")
    translations = serializers.DictField(required=False, default=dict)
    sample_context = serializers.DictField(required=False, default=dict)
    active = StrictBooleanField(required=False, default=True)

    class Meta:
        model = Template
        fields = ("key", "name", "category", "variables", "content", "translations", "sample_context",
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
        return attrs


class ChannelConfigSerializer(serializers.ModelSerializer):
    name = StrictCharField(max_length=100)
    kind = StrictChoiceField(choices=ChannelKind.choices)
    backend = StrictChoiceField(choices=[])
    options = serializers.DictField(required=False, default=dict, help_text="Non-secret options of the backend.")
    secrets = serializers.DictField(
        write_only=True, required=False, default=dict,
        help_text="Secret options (passwords, tokens). Write-only; omitted keys keep their value.",
    )
    secrets_set = serializers.SerializerMethodField(help_text="Secret option names that are set, masked.")
    enabled = StrictBooleanField(required=False, default=True)
    priority = StrictIntegerField(required=False, default=100)

    class Meta:
        model = ChannelConfig
        fields = ("name", "kind", "backend", "options", "secrets", "secrets_set", "enabled", "priority",
                  "created_at", "updated_at")
        read_only_fields = ("created_at", "updated_at")
        ref_name = "ChannelConfig"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["backend"].choices = sorted(all_backends())

    def get_secrets_set(self, obj) -> dict[str, str]:
        return obj.masked_secrets()

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
        return attrs

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
