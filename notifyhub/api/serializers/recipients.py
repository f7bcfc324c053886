"""Recipients, their contact points and preferences."""
from functools import cached_property

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from channels_app.kinds import ChannelKind
from notifyhub.api.fields import StrictBooleanField, StrictCharField, StrictChoiceField, StrictEmailField
from notifyhub.api.parsers import json_field_check
from notifyhub.api.serializers.base import RefuseUnknownFieldsMixin
from preferences.models import Category, ContactPoint, Preference, Recipient
from preferences.quiet_hours import quiet_hours_parse
from preferences.services import PreferenceInput, RecipientInput
from preferences.validators import normalize_address, normalize_phone, validate_timezone


def _django_to_drf(validator, value):
    try:
        return validator(value)
    except DjangoValidationError as exc:
        raise serializers.ValidationError(exc.messages) from None


@extend_schema_field({
    "type": "object", "nullable": True,
    "properties": {"start": {"type": "string", "example": "22:00"}, "end": {"type": "string", "example": "08:00"}},
})
class QuietHoursField(serializers.Field):
    """``{"start": "HH:MM", "end": "HH:MM"}`` in the recipient's timezone."""

    def to_internal_value(self, data):
        if not isinstance(data, dict) or set(data) != {"start", "end"}:
            raise serializers.ValidationError('Expected {"start": "HH:MM", "end": "HH:MM"}.')
        if not all(isinstance(v, str) for v in data.values()):
            raise serializers.ValidationError("start and end are strings like 22:00.")
        try:
            window = quiet_hours_parse(start=data["start"], end=data["end"])
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None
        return window or False  # start == end: no quiet hours

    def to_representation(self, value):
        return value


class RecipientFieldsSerializer(RefuseUnknownFieldsMixin, serializers.Serializer):
    """Profile and contact fields shared by inline recipients and ``PUT /recipients/{id}``."""

    name = StrictCharField(max_length=255, required=False, allow_blank=True)
    email = StrictEmailField(max_length=254, required=False, allow_blank=False)
    phone = StrictCharField(max_length=32, required=False, help_text="E.164, e.g. +8613800138000.")
    locale = StrictCharField(max_length=35, required=False, allow_blank=True, help_text="BCP 47, e.g. zh-CN.")
    timezone = StrictCharField(max_length=64, required=False, allow_blank=True, help_text="IANA, e.g. Asia/Shanghai.")
    data = serializers.DictField(required=False, validators=[json_field_check],
                                 help_text="Free data, visible to templates as recipient.data.")
    quiet_hours = QuietHoursField(required=False, allow_null=True,
                                  help_text='Local time window with no non-critical sends, e.g. '
                                            '{"start": "22:00", "end": "08:00"}; null clears it.')

    def validate_phone(self, value):
        return _django_to_drf(normalize_phone, value)

    def validate_timezone(self, value):
        return _django_to_drf(validate_timezone, value)

    def validate_email(self, value):
        local, _, domain = value.rpartition("@")
        return f"{local}@{domain.lower()}"

    def to_input(self, external_id: str) -> RecipientInput:
        data = self.validated_data
        contacts = {kind: data[field] for field, kind in (("email", ChannelKind.EMAIL), ("phone", ChannelKind.SMS))
                    if data.get(field)}
        quiet = data.get("quiet_hours", ...)
        return RecipientInput(
            external_id=external_id, name=data.get("name"), locale=data.get("locale"),
            timezone=data.get("timezone"), data=data.get("data"), contacts=contacts,
            quiet_hours=None if quiet is ... else ((quiet.start, quiet.end) if quiet else (None, None)),
        )


class InlineRecipientSerializer(RecipientFieldsSerializer):
    external_id = StrictCharField(max_length=255, help_text="The calling system's user id.")

    class Meta:
        ref_name = "InlineRecipient"


class RecipientRefField(serializers.Field):
    """An external id, or an object that creates or updates the recipient on the way (its
    OpenAPI schema is ``notifyhub.api.schema.RecipientRefFieldExtension``)."""

    default_error_messages = {"invalid": "Expected an external id string or a recipient object."}

    def to_internal_value(self, data):
        if isinstance(data, str):
            if not data.strip() or len(data) > 255:
                raise serializers.ValidationError("An external id is 1 to 255 characters.")
            return data
        if isinstance(data, dict):
            serializer = InlineRecipientSerializer(data=data)
            if not serializer.is_valid():
                raise serializers.ValidationError(serializer.errors)
            return serializer.to_input(serializer.validated_data["external_id"])
        self.fail("invalid")

    def to_representation(self, value):
        return value


class ContactPointSerializer(serializers.ModelSerializer):
    class Meta:
        model = ContactPoint
        fields = ("id", "kind", "address", "app", "label", "active", "deactivated_reason", "created_at")
        read_only_fields = fields
        ref_name = "ContactPoint"


class ContactPointCreateSerializer(RefuseUnknownFieldsMixin, serializers.Serializer):
    """A new address: a device token, a Web Push subscription, a WeChat openid, a phone..."""

    kind = StrictChoiceField(choices=ChannelKind.choices)
    address = StrictCharField(max_length=2000, help_text="Web Push: the subscription object as a JSON string.")
    app = StrictCharField(max_length=100, required=False, allow_blank=True, default="",
                          help_text="Push: fcm, apns or webpush. WeChat: the appid. Chat: the account name.")
    label = StrictCharField(max_length=100, required=False, allow_blank=True, default="")

    class Meta:
        ref_name = "ContactPointCreate"

    def validate(self, attrs):
        from channels_app.errors import InvalidAddressError
        from channels_app.registry import all_backends

        kind, app = attrs["kind"], attrs["app"]
        try:
            attrs["address"] = normalize_address(kind, attrs["address"])
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"address": exc.messages}) from None
        platforms = sorted(name for name, cls in all_backends().items() if cls.kind == kind)
        if kind == ChannelKind.PUSH and app not in platforms:
            raise serializers.ValidationError(
                {"app": [f"Push tokens need the platform: one of {', '.join(platforms)}."]})
        backend = _address_backend(kind=kind, app=app)
        if backend is not None:
            try:
                attrs["address"] = backend.validate_address(attrs["address"])
            except InvalidAddressError as exc:
                raise serializers.ValidationError({"address": [str(exc)]}) from None
        return attrs


def _address_backend(*, kind: str, app: str):
    """The backend that checks an address: the one ``app`` names (a backend, or an account of
    the kind), else the kind's only backend — so a blank ``app`` never skips the check."""
    from channels_app.models import ChannelConfig
    from channels_app.registry import all_backends

    backends = all_backends()
    if app and app in backends and backends[app].kind == kind:
        return backends[app]
    if app:
        account = ChannelConfig.objects.filter(name=app, kind=kind).only("backend").first()
        if account is not None and account.backend in backends:
            return backends[account.backend]
    of_kind = [cls for cls in backends.values() if cls.kind == kind]
    return of_kind[0] if len(of_kind) == 1 else None


class RecipientSerializer(serializers.ModelSerializer):
    contacts = ContactPointSerializer(source="contact_points", many=True, read_only=True)

    class Meta:
        model = Recipient
        fields = ("external_id", "name", "locale", "timezone", "quiet_hours", "data", "contacts", "created_at",
                  "updated_at")
        ref_name = "Recipient"

    quiet_hours = serializers.SerializerMethodField()

    def get_quiet_hours(self, obj) -> dict | None:
        if obj.quiet_start is None or obj.quiet_end is None:
            return None
        return {"start": obj.quiet_start.strftime("%H:%M"), "end": obj.quiet_end.strftime("%H:%M")}


class RecipientUpsertSerializer(RecipientFieldsSerializer):
    class Meta:
        ref_name = "RecipientUpsert"


class PreferenceSerializer(RefuseUnknownFieldsMixin, serializers.Serializer):
    category = StrictCharField(allow_null=True, required=False, default=None,
                               help_text="Category key; null means every category.")
    channel = StrictChoiceField(choices=ChannelKind.choices, allow_null=True, required=False, default=None,
                                help_text="Channel kind; null means every channel.")
    enabled = StrictBooleanField()

    class Meta:
        ref_name = "Preference"

    def validate_category(self, value):
        if value is None:
            return None
        category = self.root.categories.get(value)
        if category is None:
            raise serializers.ValidationError(f"Unknown category {value!r}.")
        return category

    def to_representation(self, instance: Preference):
        return {"category": instance.category.key if instance.category else None,
                "channel": instance.channel or None, "enabled": instance.enabled}


class PreferencesSerializer(RefuseUnknownFieldsMixin, serializers.Serializer):
    preferences = PreferenceSerializer(many=True)

    class Meta:
        ref_name = "Preferences"

    @cached_property
    def categories(self) -> dict[str, Category]:
        """Every category by key, loaded once per request when a preference names one."""
        return Category.objects.in_bulk(field_name="key")

    def to_inputs(self) -> list[PreferenceInput]:
        return [PreferenceInput(category=p["category"], channel=p["channel"] or "", enabled=p["enabled"])
                for p in self.validated_data["preferences"]]
