"""``/api/v1/recipients``: upsert, read, delete, search; preferences."""
from django.db.models import Q
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from notifyhub.api import examples
from notifyhub.api.parsers import JSONParser
from notifyhub.api.serializers.recipients import (
    ContactPointCreateSerializer,
    ContactPointSerializer,
    PreferencesSerializer,
    RecipientSerializer,
    RecipientUpsertSerializer,
)
from preferences.models import ContactPoint, Recipient
from preferences.services import (
    contact_point_add,
    contact_point_remove,
    preferences_replace,
    recipient_delete,
    recipients_upsert,
)

EXTERNAL_ID_MAX = Recipient._meta.get_field("external_id").max_length


def _recipients():
    return Recipient.objects.prefetch_related("contact_points")


class RecipientListView(generics.ListAPIView):
    scopes = {"GET": "read"}
    parser_classes = [JSONParser]
    serializer_class = RecipientSerializer

    def get_queryset(self):
        queryset = _recipients()
        search = self.request.query_params.get("search", "").strip()
        if search:
            queryset = queryset.filter(
                Q(external_id__icontains=search) | Q(name__icontains=search)
                | Q(contact_points__address__icontains=search)
            ).distinct()
        return queryset

    @extend_schema(
        summary="List recipients",
        description="Recipients with their contact points; `search` matches external id, name or an address.",
        parameters=[OpenApiParameter("search", OpenApiTypes.STR, description="Substring to look for.")],
        examples=[OpenApiExample("Recipients", value=examples.RECIPIENT_LIST, response_only=True)],
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)


class RecipientDetailView(APIView):
    scopes = {"GET": "read", "PUT": "send", "DELETE": "manage"}
    parser_classes = [JSONParser]

    @extend_schema(
        summary="Read a recipient", responses={200: RecipientSerializer},
        description="A recipient with contact points.",
        examples=[OpenApiExample("Recipient", value=examples.RECIPIENT, response_only=True)],
    )
    def get(self, request, external_id):
        return Response(RecipientSerializer(get_object_or_404(_recipients(), external_id=external_id)).data)

    @extend_schema(
        summary="Create or update a recipient",
        description="Fields left out stay as they are. `email` and `phone` become the recipient's address for "
                    "the email and sms channels. Answers 201 when created, 200 when updated.",
        request=RecipientUpsertSerializer, responses={200: RecipientSerializer, 201: RecipientSerializer},
        examples=[
            OpenApiExample("Upsert", value=examples.RECIPIENT_UPSERT, request_only=True),
            OpenApiExample("Recipient", value=examples.RECIPIENT, response_only=True),
        ],
    )
    def put(self, request, external_id):
        if len(external_id) > EXTERNAL_ID_MAX or not external_id.strip():
            raise ValidationError({"external_id": [f"An external id is 1 to {EXTERNAL_ID_MAX} characters."]})
        serializer = RecipientUpsertSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        created = not Recipient.objects.filter(external_id=external_id).exists()
        recipients_upsert(items=[serializer.to_input(external_id)])
        recipient = _recipients().get(external_id=external_id)
        return Response(RecipientSerializer(recipient).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(summary="Delete a recipient", responses={204: None},
                   description="Deletes the recipient, contact points, preferences and delivery history.")
    def delete(self, request, external_id):
        recipient_delete(recipient=get_object_or_404(Recipient, external_id=external_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


class RecipientPreferencesView(APIView):
    scopes = {"GET": "read", "PUT": "send"}
    parser_classes = [JSONParser]

    @extend_schema(
        summary="Read a recipient's preferences", responses={200: PreferencesSerializer},
        description="Each preference says whether a category (null: all) may use a channel (null: all).",
        examples=[OpenApiExample("Preferences", value=examples.PREFERENCES, response_only=True)],
    )
    def get(self, request, external_id):
        recipient = get_object_or_404(Recipient, external_id=external_id)
        preferences = recipient.preferences.select_related("category")
        return Response(PreferencesSerializer({"preferences": preferences}).data)

    @extend_schema(
        summary="Replace a recipient's preferences",
        description="Replaces the whole list. The most specific preference wins: category × channel, category, "
                    "channel, then all; critical categories ignore opt-outs.",
        request=PreferencesSerializer, responses={200: PreferencesSerializer},
        examples=[OpenApiExample("Preferences", value=examples.PREFERENCES)],
    )
    def put(self, request, external_id):
        recipient = get_object_or_404(Recipient, external_id=external_id)
        serializer = PreferencesSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        preferences_replace(recipient=recipient, preferences=serializer.to_inputs())
        preferences = recipient.preferences.select_related("category")
        return Response(PreferencesSerializer({"preferences": preferences}).data)


class RecipientContactPointsView(APIView):
    scopes = {"GET": "read", "POST": "send"}
    parser_classes = [JSONParser]

    @extend_schema(
        summary="List a recipient's contact points",
        description="Every address, active or not; a deactivated one says why (bounced, unregistered token...).",
        responses={200: ContactPointSerializer(many=True)},
    )
    def get(self, request, external_id):
        recipient = get_object_or_404(Recipient, external_id=external_id)
        return Response(ContactPointSerializer(recipient.contact_points.all(), many=True).data)

    @extend_schema(
        summary="Add a contact point",
        description="Adds one address and keeps the others. Adding an address that exists answers 200 with it "
                    "as it is: a deactivated one (bounced, unregistered token) stays deactivated until an operator "
                    "reactivates it in the admin. Push tokens name their platform in `app`; a WeChat openid names "
                    "its appid.",
        request=ContactPointCreateSerializer, responses={201: ContactPointSerializer, 200: ContactPointSerializer},
        examples=[OpenApiExample("FCM token", value=examples.CONTACT_POINT_FCM),
                  OpenApiExample("Web Push subscription", value=examples.CONTACT_POINT_WEBPUSH)],
    )
    def post(self, request, external_id):
        recipient = get_object_or_404(Recipient, external_id=external_id)
        serializer = ContactPointCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        point, created = contact_point_add(recipient=recipient, **serializer.validated_data)
        return Response(ContactPointSerializer(point).data,
                        status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class RecipientContactPointDetailView(APIView):
    scopes = {"DELETE": "send"}
    parser_classes = [JSONParser]

    @extend_schema(
        summary="Remove a contact point",
        description="Deletes the address (e.g. the app logged out on that device).",
        request=None, responses={204: None},
    )
    def delete(self, request, external_id, pk):
        point = get_object_or_404(ContactPoint, pk=pk, recipient__external_id=external_id)
        contact_point_remove(point=point)
        return Response(status=status.HTTP_204_NO_CONTENT)
