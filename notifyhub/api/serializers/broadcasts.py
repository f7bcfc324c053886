"""Topics, their subscribers, segments and imports."""
from django.conf import settings
from rest_framework import serializers

from notifyhub.api.fields import StrictCharField
from notifyhub.api.serializers.recipients import RecipientRefField
from notifyhub.broadcasts.models import Broadcast, BroadcastRun, Import, Segment, Subscription, Topic
from notifyhub.broadcasts.segments import SegmentInvalid, segment_validate
from notifyhub.messaging.models import Template
from preferences.models import Category, Recipient

MAX_IDS = settings.NOTIFYHUB_MAX_RECIPIENTS_PER_REQUEST


class TopicSerializer(serializers.ModelSerializer):
    default_category = serializers.SlugRelatedField(
        slug_field="key", queryset=Category.objects.all(), allow_null=True, required=False,
        help_text="Category key used by broadcasts to this topic when they name none.",
    )
    name = StrictCharField(max_length=200)
    description = StrictCharField(required=False, allow_blank=True)
    subscriber_count = serializers.SerializerMethodField()

    class Meta:
        model = Topic
        fields = ("key", "name", "description", "default_category", "subscriber_count", "created_at", "updated_at")
        read_only_fields = ("created_at", "updated_at")
        ref_name = "Topic"

    def get_subscriber_count(self, obj) -> int:
        count = getattr(obj, "subscriber_count", None)
        return obj.subscriptions.count() if count is None else count


class SubscribersAddSerializer(serializers.Serializer):
    recipients = serializers.ListField(
        child=RecipientRefField(), min_length=1, max_length=MAX_IDS,
        help_text="External ids, or recipient objects that create or update the recipient on the way.",
    )

    class Meta:
        ref_name = "SubscribersAdd"


class SubscribersRemoveSerializer(serializers.Serializer):
    external_ids = serializers.ListField(child=StrictCharField(max_length=255), min_length=1, max_length=MAX_IDS)

    class Meta:
        ref_name = "SubscribersRemove"


class SubscribersChangeSerializer(serializers.Serializer):
    added = serializers.IntegerField(help_text="Newly subscribed.")
    already = serializers.IntegerField(help_text="Already subscribed; left as they were.")
    removed = serializers.IntegerField(help_text="Unsubscribed by this call.")
    unknown = serializers.DictField(child=serializers.CharField(),
                                    help_text="Position in the request → external id that matches no recipient.")

    class Meta:
        ref_name = "SubscribersChange"


class SubscriberSerializer(serializers.ModelSerializer):
    external_id = serializers.CharField(source="recipient.external_id")
    name = serializers.CharField(source="recipient.name")
    subscribed_at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = Subscription
        fields = ("external_id", "name", "subscribed_at")
        ref_name = "Subscriber"


class SegmentSerializer(serializers.ModelSerializer):
    name = StrictCharField(max_length=200)
    description = StrictCharField(required=False, allow_blank=True)
    definition = serializers.JSONField(help_text="all/any/not groups of {field, op, value} clauses.")

    class Meta:
        model = Segment
        fields = ("key", "name", "description", "definition", "created_at", "updated_at")
        read_only_fields = ("created_at", "updated_at")
        ref_name = "Segment"

    def validate(self, attrs):
        if "definition" in attrs:
            try:
                segment_validate(definition=attrs["definition"])
            except SegmentInvalid as exc:
                raise serializers.ValidationError(exc.errors) from None
        return attrs


class SampleRecipientSerializer(serializers.ModelSerializer):
    class Meta:
        model = Recipient
        fields = ("external_id", "name", "locale", "timezone")
        ref_name = "SampleRecipient"


class SegmentPreviewSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Recipients the segment matches now.")
    sample = SampleRecipientSerializer(many=True, help_text="Up to ten of them, by external id.")

    class Meta:
        ref_name = "SegmentPreview"


class ImportCreateSerializer(serializers.Serializer):
    file = serializers.FileField(required=False, help_text="The CSV file (multipart/form-data).")
    content = StrictCharField(required=False, trim_whitespace=False,
                              help_text="Or the CSV text itself, in a JSON body (small lists).")
    filename = StrictCharField(required=False, max_length=255, help_text="Name to show for `content`.")

    class Meta:
        ref_name = "ImportCreate"

    def validate(self, attrs):
        if ("file" in attrs) == ("content" in attrs):
            raise serializers.ValidationError({"file": ["Send either a file (multipart) or content (JSON)."]})
        if "content" in attrs and not attrs["content"].strip():
            raise serializers.ValidationError({"content": ["The CSV is empty; a header row is required."]})
        return attrs


class ImportSerializer(serializers.ModelSerializer):
    progress = serializers.IntegerField(source="progress_percent", help_text="0 to 100.")
    rejects_url = serializers.SerializerMethodField()

    class Meta:
        model = Import
        fields = ("id", "original_name", "status", "progress", "size_bytes", "bytes_read", "encoding", "delimiter",
                  "rows_read", "created", "updated", "rejected", "error", "rejects_url", "created_at", "started_at",
                  "finished_at")
        read_only_fields = fields
        ref_name = "Import"

    def get_rejects_url(self, obj) -> str | None:
        if not obj.rejects_file:
            return None
        url = f"/api/v1/imports/{obj.pk}/rejects"
        request = self.context.get("request")
        return request.build_absolute_uri(url) if request else url


class BroadcastSerializer(serializers.ModelSerializer):
    template = serializers.SlugRelatedField(slug_field="key", queryset=Template.objects.filter(active=True),
                                            help_text="Template key.")
    topics = serializers.SlugRelatedField(slug_field="key", queryset=Topic.objects.all(), many=True, required=False,
                                          help_text="Topic keys; the audience is their subscribers.")
    segment = serializers.SlugRelatedField(slug_field="key", queryset=Segment.objects.all(), allow_null=True,
                                           required=False, help_text="Segment key; added to the topics' audience.")
    confirm_all = serializers.BooleanField(write_only=True, required=False, default=False,
                                           help_text="Must be true when all_recipients is.")
    name = StrictCharField(max_length=200)

    class Meta:
        model = Broadcast
        fields = ("id", "name", "template", "topics", "segment", "all_recipients", "confirm_all", "context",
                  "channels", "priority", "schedule", "send_at", "cron", "interval_every", "interval_unit",
                  "timezone", "starts_at", "ends_at", "status", "created_at", "updated_at")
        read_only_fields = ("id", "status", "created_at", "updated_at")
        ref_name = "Broadcast"

    def validate(self, attrs):
        if attrs.get("all_recipients") and not attrs.pop("confirm_all", False):
            raise serializers.ValidationError({"confirm_all": ["Confirm that this broadcast goes to every recipient."]})
        attrs.pop("confirm_all", None)
        return attrs


class BroadcastRunSerializer(serializers.ModelSerializer):
    message_status = serializers.CharField(source="message.status", default=None, read_only=True)

    class Meta:
        model = BroadcastRun
        fields = ("id", "message", "message_status", "recipient_count", "started_at")
        ref_name = "BroadcastRun"


class BroadcastTestSerializer(serializers.Serializer):
    recipient = StrictCharField(max_length=255, help_text="External id of the recipient to send the test to.")

    class Meta:
        ref_name = "BroadcastTest"
