"""Send requests, messages, deliveries and their events."""
from django.conf import settings
from django.urls import reverse
from rest_framework import serializers

from channels_app.kinds import ChannelKind
from notifyhub.api.fields import StrictBooleanField, StrictChoiceField
from notifyhub.api.parsers import json_field_check
from notifyhub.api.serializers.base import RefuseUnknownFieldsMixin
from notifyhub.api.serializers.recipients import RecipientRefField
from notifyhub.messaging.models import Delivery, DeliveryEvent, Message, MessagePriority, Template
from notifyhub.messaging.services.accept import MessageRejected, context_check


class MessageCreateSerializer(RefuseUnknownFieldsMixin, serializers.Serializer):
    template = serializers.SlugRelatedField(
        slug_field="key", queryset=Template.objects.filter(active=True).select_related("category"),
        help_text="Template key.",
    )
    to = serializers.ListField(
        child=RecipientRefField(), min_length=1, max_length=settings.NOTIFYHUB_MAX_RECIPIENTS_PER_REQUEST,
        help_text="Recipients: external ids, or objects that create or update them.",
    )
    context = serializers.DictField(required=False, default=dict, validators=[json_field_check],
                                    help_text="Values for the template's variables.")
    channels = serializers.ListField(
        child=StrictChoiceField(choices=ChannelKind.choices), required=False, allow_empty=False,
        help_text="Only these channel kinds; default: every kind the template has content for.",
    )
    send_at = serializers.DateTimeField(required=False, allow_null=True, help_text="Send later (ISO 8601).")
    priority = StrictChoiceField(
        choices=MessagePriority.choices, required=False, default=MessagePriority.NORMAL,
        help_text="high: the transactional lane (one-time passwords, alerts); normal: the bulk lane unless the "
                  "template's category is critical.",
    )
    dry_run = StrictBooleanField(required=False, default=False,
                                 help_text="Answer with decisions and rendered content; write nothing.")

    class Meta:
        ref_name = "MessageCreate"

    def validate(self, attrs):
        try:
            context_check(template=attrs["template"], context=attrs.get("context", {}))
        except MessageRejected as exc:
            raise serializers.ValidationError(exc.errors) from None
        return attrs


class DeliveryEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryEvent
        fields = ("at", "status", "detail")
        ref_name = "DeliveryEvent"


class DeliverySerializer(serializers.ModelSerializer):
    recipient = serializers.CharField(source="recipient.external_id", read_only=True)
    channel_account = serializers.CharField(source="channel_config.name", read_only=True, default=None)

    class Meta:
        model = Delivery
        fields = ("id", "recipient", "channel", "address", "lane", "status", "reason", "detail", "attempts",
                  "next_attempt_at", "channel_account", "provider_message_id", "sent_at", "fallback_from", "explain")
        ref_name = "Delivery"


class DeliveryDetailSerializer(DeliverySerializer):
    events = DeliveryEventSerializer(many=True, read_only=True)

    class Meta(DeliverySerializer.Meta):
        fields = (*DeliverySerializer.Meta.fields, "content", "events")
        ref_name = "DeliveryDetail"


class MessageSerializer(serializers.ModelSerializer):
    template = serializers.CharField(source="template.key", read_only=True)

    class Meta:
        model = Message
        fields = ("id", "template", "status", "priority", "context", "channels", "send_at", "recipient_count",
                  "idempotency_key", "created_at", "completed_at")
        ref_name = "Message"


class DeliveriesPageMixin(serializers.Serializer):
    """The first page of a message's deliveries and where the rest are: the view sets
    ``deliveries_page`` and ``deliveries_more`` on the message (see ``api.selectors``)."""

    deliveries_more = serializers.BooleanField(
        read_only=True, help_text="More deliveries than listed here: page through `deliveries_url`.")
    deliveries_url = serializers.SerializerMethodField(
        help_text="Every delivery of the message, cursor-paginated, with filters.")

    def get_deliveries_url(self, obj) -> str:
        path = reverse("api:message-deliveries", kwargs={"pk": obj.pk})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class MessageAcceptedSerializer(DeliveriesPageMixin, MessageSerializer):
    deliveries = DeliverySerializer(source="deliveries_page", many=True, read_only=True,
                                    help_text="The first deliveries (small sends list them all).")

    class Meta(MessageSerializer.Meta):
        fields = (*MessageSerializer.Meta.fields, "deliveries", "deliveries_more", "deliveries_url")
        ref_name = "MessageAccepted"


class MessageDetailSerializer(DeliveriesPageMixin, MessageSerializer):
    deliveries = DeliveryDetailSerializer(source="deliveries_page", many=True, read_only=True,
                                          help_text="The first page of deliveries with their events.")

    class Meta(MessageSerializer.Meta):
        fields = (*MessageSerializer.Meta.fields, "deliveries", "deliveries_more", "deliveries_url")
        ref_name = "MessageDetail"


class PlannedDeliverySerializer(serializers.Serializer):
    recipient = serializers.CharField(source="recipient.external_id")
    channel = serializers.CharField()
    status = serializers.CharField()
    reason = serializers.CharField()
    address = serializers.CharField()
    lane = serializers.CharField()
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    content = serializers.DictField()
    explain = serializers.ListField(child=serializers.CharField())

    class Meta:
        ref_name = "PlannedDelivery"


class DryRunSerializer(serializers.Serializer):
    dry_run = serializers.BooleanField()
    deliveries = PlannedDeliverySerializer(many=True)

    class Meta:
        ref_name = "DryRun"


class CancelResultSerializer(serializers.Serializer):
    cancelled = serializers.IntegerField(help_text="Deliveries cancelled by this call.")
    message = MessageSerializer()

    class Meta:
        ref_name = "CancelResult"
