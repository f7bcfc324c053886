"""``/api/v1/topics``, ``/api/v1/segments`` and ``/api/v1/imports``: broadcast audiences."""
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status, viewsets
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from notifyhub.api.parsers import JSONParser
from notifyhub.api.serializers.broadcasts import (
    BroadcastRunSerializer,
    BroadcastSerializer,
    BroadcastTestSerializer,
    ImportCreateSerializer,
    ImportSerializer,
    SegmentPreviewSerializer,
    SegmentSerializer,
    SubscribersAddSerializer,
    SubscribersChangeSerializer,
    SubscriberSerializer,
    SubscribersRemoveSerializer,
    TopicSerializer,
)
from notifyhub.broadcasts.models import Broadcast, Import, Segment, Topic
from notifyhub.broadcasts.runs import (
    broadcast_cancel,
    broadcast_delete,
    broadcast_pause,
    broadcast_resume,
    broadcast_schedule,
    broadcast_test_send,
)
from notifyhub.broadcasts.selectors import segment_preview, topic_subscriptions, topics_with_counts
from notifyhub.broadcasts.services import (
    AudienceRejected,
    import_create,
    import_create_from_text,
    topic_subscribers_add,
    topic_subscribers_remove,
)

EDIT = {"GET": "read", "POST": "manage", "PUT": "manage", "PATCH": "manage", "DELETE": "manage"}

TOPIC = {"key": "release-notes", "name": "Release notes", "description": "What shipped this week",
         "default_category": "product-news", "subscriber_count": 1280, "created_at": "2026-11-28T08:00:00Z",
         "updated_at": "2026-11-28T08:00:00Z"}
TOPIC_WRITE = {"key": "release-notes", "name": "Release notes", "description": "What shipped this week",
               "default_category": "product-news"}
SUBSCRIBERS_ADD = {"recipients": ["user-42", {"external_id": "user-43", "email": "bo@example.com", "name": "Bo"}]}
SUBSCRIBERS_REMOVE = {"external_ids": ["user-42", "user-43"]}
SUBSCRIBERS_ADDED = {"added": 1, "already": 1, "removed": 0, "unknown": {}}
SUBSCRIBERS_REMOVED = {"added": 0, "already": 0, "removed": 1, "unknown": {"1": "user-43"}}
SUBSCRIBERS_PAGE = {"next": "https://hub.example.com/api/v1/topics/release-notes/subscribers?cursor=cD0xMjM%3D",
                    "previous": None,
                    "results": [{"external_id": "user-42", "name": "Ada", "subscribed_at": "2026-11-28T08:00:00Z"}]}
SEGMENT = {"key": "shanghai-vip", "name": "Shanghai VIPs", "description": "",
           "definition": {"all": [{"field": "data.city", "op": "=", "value": "上海"},
                                  {"field": "data.vip_level", "op": ">=", "value": 3},
                                  {"any": [{"field": "has_address", "op": "=", "value": "sms"},
                                           {"field": "topic", "op": "=", "value": "release-notes"}]},
                                  {"not": {"field": "locale", "op": "=", "value": "en"}}]}}
SEGMENT_PREVIEW = {"count": 312, "sample": [{"external_id": "user-42", "name": "Ada", "locale": "zh-CN",
                                             "timezone": "Asia/Shanghai"}]}


def _crud_docs(noun: str, plural: str, example: dict, write: dict, extra: str = ""):
    ex = [OpenApiExample(noun.capitalize(), value=write, request_only=True),
          OpenApiExample(noun.capitalize(), value=example, response_only=True)]
    return extend_schema_view(
        list=extend_schema(summary=f"List {plural}", description=f"All {plural} (scope read).{extra}",
                           examples=[OpenApiExample(plural.capitalize(), value=example, response_only=True)]),
        create=extend_schema(summary=f"Create a {noun}", description=f"Create a {noun} (scope manage).{extra}",
                             examples=ex),
        retrieve=extend_schema(summary=f"Read a {noun}", description=f"One {noun} (scope read).", examples=ex),
        update=extend_schema(summary=f"Replace a {noun}", description=f"Replace a {noun} (scope manage).{extra}",
                             examples=ex),
        partial_update=extend_schema(summary=f"Update a {noun}",
                                     description=f"Change some fields of a {noun} (scope manage).", examples=ex),
        destroy=extend_schema(summary=f"Delete a {noun}", description=f"Delete a {noun} (scope manage)."),
    )


@_crud_docs("topic", "topics", TOPIC, TOPIC_WRITE,
            " Recipients subscribe to a topic; a broadcast to the topic reaches its subscribers at run time.")
class TopicViewSet(viewsets.ModelViewSet):
    scopes = EDIT
    serializer_class = TopicSerializer
    lookup_field = "key"

    def get_queryset(self):
        return topics_with_counts()


@_crud_docs("segment", "segments", SEGMENT, SEGMENT,
            " A segment is a saved filter over recipients: `all`/`any`/`not` groups of `{field, op, value}` "
            "clauses over `locale`, `timezone`, `created_at`, `updated_at`, `has_address` (a channel kind), "
            "`topic` (a topic key) and `data.<key>`, with the operators `=`, `!=`, `<`, `<=`, `>`, `>=`, `in`, "
            "`contains`, `exists`. An invalid definition answers 400 naming the clause, e.g. "
            "`definition.all[1].op`.")
class SegmentViewSet(viewsets.ModelViewSet):
    scopes = EDIT
    serializer_class = SegmentSerializer
    queryset = Segment.objects.all()
    lookup_field = "key"


class SubscriberCursor(CursorPagination):
    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000
    ordering = "id"


class TopicSubscribersView(generics.ListAPIView):
    scopes = {"GET": "read", "POST": "send"}
    serializer_class = SubscriberSerializer
    pagination_class = SubscriberCursor

    def get_queryset(self):
        return topic_subscriptions(topic=get_object_or_404(Topic, key=self.kwargs["key"]))

    @extend_schema(
        summary="List a topic's subscribers",
        description="Subscribers in the order they subscribed, cursor-paginated: follow `next` (scope read).",
        examples=[OpenApiExample("Subscribers", value=SUBSCRIBERS_PAGE, response_only=True)],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Subscribe recipients to a topic",
        description="Up to 10,000 recipients per call: external ids, or objects that create or update the "
                    "recipient on the way (as in `POST /messages`). Idempotent: recipients already subscribed "
                    "stay subscribed once. An unknown external id answers 400 naming its position, and nothing "
                    "is written (scope send).",
        request=SubscribersAddSerializer, responses={200: SubscribersChangeSerializer},
        examples=[OpenApiExample("Subscribe", value=SUBSCRIBERS_ADD, request_only=True),
                  OpenApiExample("Result", value=SUBSCRIBERS_ADDED, response_only=True)],
    )
    def post(self, request, key):
        topic = get_object_or_404(Topic, key=key)
        serializer = SubscribersAddSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            change = topic_subscribers_add(topic=topic, items=serializer.validated_data["recipients"])
        except AudienceRejected as exc:
            raise ValidationError(exc.errors) from None
        return Response(SubscribersChangeSerializer(change).data, status=status.HTTP_200_OK)


class TopicSubscribersRemoveView(APIView):
    scopes = {"POST": "send"}

    @extend_schema(
        summary="Unsubscribe recipients from a topic",
        description="Up to 10,000 external ids per call. Idempotent: recipients not subscribed are left alone; "
                    "external ids that match no recipient are listed by position in `unknown` (scope send).",
        request=SubscribersRemoveSerializer, responses={200: SubscribersChangeSerializer},
        examples=[OpenApiExample("Unsubscribe", value=SUBSCRIBERS_REMOVE, request_only=True),
                  OpenApiExample("Result", value=SUBSCRIBERS_REMOVED, response_only=True)],
    )
    def post(self, request, key):
        topic = get_object_or_404(Topic, key=key)
        serializer = SubscribersRemoveSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        change = topic_subscribers_remove(topic=topic, external_ids=serializer.validated_data["external_ids"])
        return Response(SubscribersChangeSerializer(change).data)


class SegmentPreviewView(APIView):
    scopes = {"POST": "read"}

    @extend_schema(
        summary="Preview a segment's audience",
        description="How many recipients the segment matches now, and ten of them (scope read). Nothing is "
                    "written.",
        request=None, responses={200: SegmentPreviewSerializer},
        examples=[OpenApiExample("Preview", value=SEGMENT_PREVIEW, response_only=True)],
    )
    def post(self, request, key):
        count, sample = segment_preview(segment=get_object_or_404(Segment, key=key))
        return Response(SegmentPreviewSerializer({"count": count, "sample": sample}).data)


IMPORT = {"id": 7, "original_name": "crm-export.csv", "status": "running", "progress": 42, "size_bytes": 5242880,
          "bytes_read": 2202009, "encoding": "utf-8-sig", "delimiter": ",", "rows_read": 41000, "created": 39500,
          "updated": 1100, "rejected": 400, "error": "", "rejects_url": None, "created_at": "2026-11-28T08:00:00Z",
          "started_at": "2026-11-28T08:00:01Z", "finished_at": None}
IMPORT_JSON = {"filename": "vip.csv", "content": "external_id,name,email,data.city,topics\n"
                                                 "user-42,Ada,ada@example.com,上海,release-notes;outage\n"}


class ImportListCreateView(generics.ListAPIView):
    scopes = {"GET": "read", "POST": "send"}
    serializer_class = ImportSerializer
    parser_classes = (MultiPartParser, JSONParser)

    def get_queryset(self):
        return Import.objects.order_by("-created_at")

    @extend_schema(
        summary="List recipient imports",
        description="CSV imports, newest first, with their status and counts (scope read).",
        examples=[OpenApiExample("Imports", value={"count": 1, "next": None, "previous": None, "results": [IMPORT]},
                                 response_only=True)],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Import recipients from CSV",
        description="Upload a CSV file as `file` (multipart/form-data), or send small lists as `content` in a "
                    "JSON body. Columns: `external_id` (required), `name`, `email`, `phone` (E.164), `locale`, "
                    "`timezone` (IANA), `data.<key>` (numbers become JSON numbers) and `topics` (`;`-separated "
                    "topic keys to subscribe to); a header row is required. UTF-8 with or without BOM, or "
                    "GB18030; comma or tab separated — both detected. The import runs in the background: answers "
                    "202 with the import; poll `GET /imports/{id}` for progress. A bad row (bad email or phone, "
                    "unknown timezone or topic, duplicate id in the file, missing external_id) is rejected with "
                    "its reason into the rejects CSV and never stops the import (scope send). API uploads are "
                    "limited by NOTIFYHUB_MAX_BODY_BYTES; upload larger files in the admin.",
        request={"multipart/form-data": ImportCreateSerializer, "application/json": ImportCreateSerializer},
        responses={202: ImportSerializer},
        examples=[OpenApiExample("CSV text", value=IMPORT_JSON, request_only=True, media_type="application/json"),
                  OpenApiExample("Import", value={**IMPORT, "status": "queued", "progress": 0}, response_only=True)],
    )
    def post(self, request):
        serializer = ImportCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if "file" in data:
            record = import_create(upload=data["file"], original_name=data["file"].name, api_key=request.auth)
        else:
            record = import_create_from_text(text=data["content"], original_name=data.get("filename", ""),
                                             api_key=request.auth)
        return Response(ImportSerializer(record, context={"request": request}).data, status=status.HTTP_202_ACCEPTED)


class ImportDetailView(generics.RetrieveAPIView):
    scopes = {"GET": "read"}
    serializer_class = ImportSerializer
    queryset = Import.objects.all()

    @extend_schema(
        summary="Read a recipient import",
        description="Status (queued, running, done, failed), progress in percent and counts; when done with "
                    "rejected rows, `rejects_url` downloads them (scope read).",
        examples=[OpenApiExample("Import", value=IMPORT, response_only=True)],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class ImportRejectsView(APIView):
    scopes = {"GET": "read"}

    @extend_schema(
        summary="Download an import's rejected rows",
        description="A CSV (UTF-8 with BOM): the line number, the reason, then the row as it was (scope read).",
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.BINARY, description="The rejected rows.")},
    )
    def get(self, request, pk):
        record = get_object_or_404(Import, pk=pk)
        if not record.rejects_file:
            return Response({"detail": "This import has no rejected rows."}, status=status.HTTP_404_NOT_FOUND)
        return FileResponse(record.rejects_file.open("rb"), as_attachment=True,
                            filename=f"import-{record.pk}-rejects.csv", content_type="text/csv")


BROADCAST_WRITE = {"name": "Weekly digest", "template": "digest", "topics": ["release-notes"], "segment": None,
                   "context": {"week": "48"}, "channels": ["email", "inapp"], "schedule": "cron",
                   "cron": "0 10 * * 1", "timezone": "Asia/Shanghai"}
BROADCAST = {"id": 3, **BROADCAST_WRITE, "all_recipients": False, "priority": "normal", "send_at": None,
             "interval_every": None, "interval_unit": "", "starts_at": None, "ends_at": None, "status": "scheduled",
             "created_at": "2026-11-28T08:00:00Z", "updated_at": "2026-11-28T08:00:00Z"}
SEND = {"GET": "read", "POST": "send", "PUT": "send", "PATCH": "send", "DELETE": "send"}


@_crud_docs("broadcast", "broadcasts", BROADCAST, BROADCAST_WRITE,
            " A key sees only its own broadcasts. The audience (topics ∪ segment, or all recipients with "
            "`confirm_all`) is resolved at each run; schedules are `now`, `once` (`send_at`), `cron` (five fields, "
            "in `timezone`) or `interval` (`interval_every` `interval_unit`). Saving a scheduled broadcast changes "
            "its schedule; deleting it removes its schedule.")
class BroadcastViewSet(viewsets.ModelViewSet):
    scopes = SEND
    serializer_class = BroadcastSerializer

    def get_queryset(self):
        return (Broadcast.objects.filter(api_key=self.request.auth).select_related("template", "segment")
                .prefetch_related("topics"))

    def perform_create(self, serializer):
        serializer.save(api_key=self.request.auth)

    def perform_update(self, serializer):
        broadcast = serializer.save()
        if broadcast.status in ("scheduled", "paused") and broadcast.schedule != "now":
            paused = broadcast.status == "paused"
            broadcast_schedule(broadcast=broadcast)
            if paused:
                broadcast_pause(broadcast=broadcast)

    def perform_destroy(self, instance):
        broadcast_delete(broadcast=instance)


def _broadcast_action(service, summary: str, description: str):
    class View(APIView):
        scopes = {"POST": "send"}

        @extend_schema(summary=summary, description=description + " Answers the broadcast (scope send).",
                       request=None, responses={200: BroadcastSerializer},
                       examples=[OpenApiExample("Broadcast", value=BROADCAST, response_only=True)])
        def post(self, request, pk):
            broadcast = get_object_or_404(Broadcast, pk=pk, api_key=request.auth)
            service(broadcast=broadcast)
            broadcast.refresh_from_db()
            return Response(BroadcastSerializer(broadcast).data)

    View.__name__ = f"Broadcast{summary.split()[0]}View"
    return View


BroadcastScheduleView = _broadcast_action(
    broadcast_schedule, "Schedule a broadcast",
    "Checks it (audience, template context, schedule) and puts it on its schedule: `now` runs at once; other "
    "schedules become a beat entry notifyhub owns. A broadcast that cannot run answers 400 by field.")
BroadcastPauseView = _broadcast_action(broadcast_pause, "Pause a broadcast", "No further runs until resumed.")
BroadcastResumeView = _broadcast_action(broadcast_resume, "Resume a broadcast", "Runs again on its schedule.")
BroadcastCancelView = _broadcast_action(
    broadcast_cancel, "Cancel a broadcast", "No further runs; what is unsent of runs in progress is cancelled.")


class BroadcastRunsView(generics.ListAPIView):
    scopes = {"GET": "read"}
    serializer_class = BroadcastRunSerializer

    def get_queryset(self):
        broadcast = get_object_or_404(Broadcast, pk=self.kwargs["pk"], api_key=self.request.auth)
        return broadcast.runs.select_related("message").order_by("-started_at")

    @extend_schema(summary="List a broadcast's runs",
                   description="Each run is one message with the audience as it was then; newest first "
                               "(scope read). Follow `message` to `GET /messages/{id}` for its deliveries.",
                   examples=[OpenApiExample("Runs", value={"count": 1, "next": None, "previous": None, "results": [
                       {"id": 9, "message": "6f1c2a4e-3b7d-4c1e-9a55-0d2f6b8e9c10", "message_status": "sent",
                        "recipient_count": 1280, "started_at": "2026-11-30T02:00:00Z"}]}, response_only=True)])
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class BroadcastTestView(APIView):
    scopes = {"POST": "send"}

    @extend_schema(
        summary="Send a broadcast to one recipient as a test",
        description="Sends the broadcast's template, context and channels to one chosen recipient now, through "
                    "the normal pipeline (preferences and quiet hours apply). The broadcast's state and schedule "
                    "do not change. Answers 202 with the message id; an unknown recipient answers 400 (scope send).",
        request=BroadcastTestSerializer, responses={202: OpenApiResponse(description="The test message's id.")},
        examples=[OpenApiExample("Test", value={"recipient": "user-42"}, request_only=True),
                  OpenApiExample("Accepted", value={"message": "6f1c2a4e-3b7d-4c1e-9a55-0d2f6b8e9c10"},
                                 response_only=True, status_codes=["202"])],
    )
    def post(self, request, pk):
        broadcast = get_object_or_404(Broadcast.objects.select_related("template"), pk=pk, api_key=request.auth)
        serializer = BroadcastTestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        message = broadcast_test_send(broadcast=broadcast, external_id=serializer.validated_data["recipient"])
        return Response({"message": str(message.pk)}, status=status.HTTP_202_ACCEPTED)
