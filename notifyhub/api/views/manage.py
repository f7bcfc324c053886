"""Templates, categories and channel accounts: the ``manage`` scope."""
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import viewsets

from channels_app.models import ChannelConfig
from notifyhub.api import examples
from notifyhub.api.parsers import JSONParser
from notifyhub.api.serializers.manage import CategorySerializer, ChannelConfigSerializer, TemplateSerializer
from notifyhub.messaging.models import Template
from preferences.models import Category

MANAGE = {"GET": "manage", "POST": "manage", "PUT": "manage", "PATCH": "manage", "DELETE": "manage"}


def _crud_docs(noun: str, plural: str, example: dict, extra: str = ""):
    ex = [OpenApiExample(noun.capitalize(), value=example)]
    return extend_schema_view(
        list=extend_schema(summary=f"List {plural}", description=f"All {plural}.{extra}",
                           examples=[OpenApiExample(plural.capitalize(), value=example, response_only=True)]),
        create=extend_schema(summary=f"Create a {noun}", description=f"Create a {noun}.{extra}", examples=ex),
        retrieve=extend_schema(summary=f"Read a {noun}", description=f"One {noun}.", examples=ex),
        update=extend_schema(summary=f"Replace a {noun}", description=f"Replace a {noun}.{extra}", examples=ex),
        partial_update=extend_schema(summary=f"Update a {noun}", description=f"Change some fields of a {noun}.",
                                     examples=ex),
        destroy=extend_schema(summary=f"Delete a {noun}", description=f"Delete a {noun}."),
    )


@_crud_docs("template", "templates", examples.TEMPLATE,
            " Content is rendered in a Jinja2 sandbox; every variable used must be declared.")
class TemplateViewSet(viewsets.ModelViewSet):
    scopes = MANAGE
    parser_classes = [JSONParser]
    serializer_class = TemplateSerializer
    queryset = Template.objects.select_related("category")
    lookup_field = "key"


@_crud_docs("category", "categories", examples.CATEGORY)
class CategoryViewSet(viewsets.ModelViewSet):
    scopes = MANAGE
    parser_classes = [JSONParser]
    serializer_class = CategorySerializer
    queryset = Category.objects.all()
    lookup_field = "key"


@_crud_docs("channel account", "channel accounts", examples.CHANNEL,
            " Secrets are write-only and stored encrypted; answers show them masked.")
class ChannelConfigViewSet(viewsets.ModelViewSet):
    scopes = MANAGE
    parser_classes = [JSONParser]
    serializer_class = ChannelConfigSerializer
    queryset = ChannelConfig.objects.all()
    lookup_field = "name"
