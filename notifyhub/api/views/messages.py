"""``/api/v1/messages``: send, list, read and cancel."""
from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from channels_app.kinds import ChannelKind
from notifyhub.api import examples
from notifyhub.api.idempotency import idempotency_claim, idempotency_finish, idempotency_release
from notifyhub.api.pagination import DeliveryCursorPagination
from notifyhub.api.parsers import JSONParser
from notifyhub.api.selectors import message_deliveries, message_deliveries_first_page
from notifyhub.api.serializers.messages import (
    CancelResultSerializer,
    DeliveryDetailSerializer,
    DryRunSerializer,
    MessageAcceptedSerializer,
    MessageCreateSerializer,
    MessageDetailSerializer,
    MessageSerializer,
)
from notifyhub.messaging.models import DeliveryStatus, MessageStatus
from notifyhub.messaging.selectors import messages_for_key
from notifyhub.messaging.services.accept import message_accept, message_preview
from notifyhub.messaging.services.cancel import message_cancel
from notifyhub.messaging.services.rules import reservations_guard

DELIVERIES_FIRST_PAGE = 50
IDEMPOTENCY_HEADER = OpenApiParameter(
    "Idempotency-Key", OpenApiTypes.STR, OpenApiParameter.HEADER, required=False,
    description="Repeat-safe sends: the same key and body return the first answer; another body → 422; "
                "a duplicate still in progress → 409.",
)


class MessageListCreateView(generics.ListAPIView):
    scopes = {"GET": "read", "POST": "send"}
    parser_classes = [JSONParser]
    serializer_class = MessageSerializer

    def get_queryset(self):
        queryset = messages_for_key(api_key=self.request.auth)
        params = self.request.query_params
        if params.get("status"):
            queryset = queryset.filter(status=params["status"])
        if params.get("template"):
            queryset = queryset.filter(template__key=params["template"])
        if params.get("recipient"):
            queryset = queryset.filter(audience__recipient__external_id=params["recipient"])
        return queryset

    @extend_schema(
        summary="List messages",
        description="Messages sent with this API key, newest first, without their deliveries.",
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=MessageStatus.values, description="Filter by status."),
            OpenApiParameter("template", OpenApiTypes.STR, description="Filter by template key."),
            OpenApiParameter("recipient", OpenApiTypes.STR, description="Filter by recipient external id."),
        ],
        examples=[OpenApiExample("Messages", value=examples.MESSAGE_LIST, response_only=True)],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    @extend_schema(
        summary="Send a message",
        description=(
            "Render a template for each recipient and deliver it over every channel kind the template has "
            "content for (or only `channels`), honouring preferences. Inline recipients are created or "
            "updated. Answers `202` with the message and, for small sends, its deliveries. `dry_run` answers "
            "`200` with the decisions and rendered content and writes nothing."
        ),
        request=MessageCreateSerializer,
        parameters=[IDEMPOTENCY_HEADER],
        responses={
            202: MessageAcceptedSerializer,
            200: OpenApiResponse(DryRunSerializer, description="Dry run: what would happen."),
            400: OpenApiResponse(description="Field-level errors; nothing was written."),
            409: OpenApiResponse(description="A request with this Idempotency-Key is in progress."),
            413: OpenApiResponse(description="Body over the size limit."),
            422: OpenApiResponse(description="Idempotency-Key reused with another body."),
        },
        examples=[
            OpenApiExample("Send to an inline recipient", value=examples.SEND_REQUEST, request_only=True),
            OpenApiExample("Dry run", value={**examples.SEND_REQUEST, "dry_run": True}, request_only=True),
            OpenApiExample("Accepted", value=examples.SEND_ACCEPTED, response_only=True, status_codes=["202"]),
            OpenApiExample("Field errors", value=examples.SEND_ERRORS, response_only=True, status_codes=["400"]),
        ],
    )
    def post(self, request):
        key = request.headers.get("Idempotency-Key", "")
        if len(key) > 255:
            raise ValidationError({"Idempotency-Key": ["At most 255 characters."]})
        claim = idempotency_claim(api_key=request.auth, key=key, data=request.data) if key else None
        if claim and claim.replay:
            return Response(claim.replay.response_body, status=claim.replay.response_status)
        try:
            return self._send(request, key, claim.record if claim else None)
        except BaseException:
            if claim and claim.record:
                idempotency_release(record=claim.record)
            raise

    def _send(self, request, key, record):
        serializer = MessageCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        common = {"template": data["template"], "to": data["to"], "context": data["context"],
                  "channels": data.get("channels", []), "priority": data["priority"]}
        if data["dry_run"]:
            plans = message_preview(send_at=data.get("send_at"), **common)
            body = DryRunSerializer({"dry_run": True, "deliveries": plans}).data
            if record:
                idempotency_finish(record=record, status_code=200, body=body)
            return Response(body, status=status.HTTP_200_OK)
        with reservations_guard(), transaction.atomic():  # a rollback gives back dedup and cap units
            message = message_accept(api_key=request.auth, send_at=data.get("send_at"), idempotency_key=key,
                                     **common)
            message.deliveries_page, message.deliveries_more = message_deliveries_first_page(
                message=message, size=DELIVERIES_FIRST_PAGE, events=False)
            body = MessageAcceptedSerializer(message, context={"request": request}).data
            if record:
                idempotency_finish(record=record, status_code=202, body=body)
        return Response(body, status=status.HTTP_202_ACCEPTED)


class MessageDetailView(APIView):
    scopes = {"GET": "read"}
    parser_classes = [JSONParser]

    @extend_schema(
        summary="Read a message",
        description=f"The message with its first {DELIVERIES_FIRST_PAGE} deliveries (status, reason, attempts, "
                    "rendered content and the event timeline); `deliveries_more` says whether there are more, "
                    "`deliveries_url` pages through all of them. Another key's message answers 404.",
        responses={200: MessageDetailSerializer},
        examples=[OpenApiExample("Message", value=examples.MESSAGE_DETAIL, response_only=True)],
    )
    def get(self, request, pk):
        message = get_object_or_404(messages_for_key(api_key=request.auth), pk=pk)
        message.deliveries_page, message.deliveries_more = message_deliveries_first_page(
            message=message, size=DELIVERIES_FIRST_PAGE)
        return Response(MessageDetailSerializer(message, context={"request": request}).data)


class MessageDeliveriesView(generics.ListAPIView):
    scopes = {"GET": "read"}
    parser_classes = [JSONParser]
    serializer_class = DeliveryDetailSerializer
    pagination_class = DeliveryCursorPagination

    def get_queryset(self):
        message = get_object_or_404(messages_for_key(api_key=self.request.auth), pk=self.kwargs["pk"])
        params = self.request.query_params
        return message_deliveries(message=message, status=params.get("status", ""),
                                  channel=params.get("channel", ""), reason=params.get("reason", ""))

    @extend_schema(
        summary="List a message's deliveries",
        description="Every delivery of the message with its events, oldest first, cursor-paginated "
                    "(follow `next`). Another key's message answers 404.",
        parameters=[
            OpenApiParameter("status", OpenApiTypes.STR, enum=DeliveryStatus.values, description="Filter by status."),
            OpenApiParameter("channel", OpenApiTypes.STR, enum=ChannelKind.values,
                             description="Filter by channel kind."),
            OpenApiParameter("reason", OpenApiTypes.STR, description="Filter by reason (e.g. opted_out)."),
        ],
        examples=[OpenApiExample("Deliveries", value=examples.DELIVERY_PAGE, response_only=True)],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class MessageCancelView(APIView):
    scopes = {"POST": "send"}
    parser_classes = [JSONParser]

    @extend_schema(
        summary="Cancel a message",
        description="Cancels every delivery not yet handed to a provider (pending or queued) and a scheduled "
                    "message that has not started. Deliveries already sent stay sent.",
        request=None,
        responses={200: CancelResultSerializer},
        examples=[OpenApiExample("Cancelled", value=examples.CANCEL_RESULT, response_only=True)],
    )
    def post(self, request, pk):
        message = get_object_or_404(messages_for_key(api_key=request.auth), pk=pk)
        cancelled = message_cancel(message=message)
        return Response(CancelResultSerializer({"cancelled": cancelled, "message": message}).data)
