"""OpenAPI extensions: the API-key scheme and fields whose schema the generator cannot infer."""
from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiSerializerFieldExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "notifyhub.api.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey", "in": "header", "name": "Authorization",
            "description": "`Api-Key <key>`. Create keys in the admin or with `manage.py create_api_key`.",
        }


class RecipientRefFieldExtension(OpenApiSerializerFieldExtension):
    """An entry of ``to``: an external id, or an inline recipient object. The object's component
    is resolved (and so registered) here, so the ``$ref`` always points at a defined schema."""

    target_class = "notifyhub.api.serializers.recipients.RecipientRefField"

    def map_serializer_field(self, auto_schema, direction):
        from notifyhub.api.serializers.recipients import InlineRecipientSerializer

        component = auto_schema.resolve_serializer(InlineRecipientSerializer, direction)
        return {"oneOf": [
            {"type": "string", "maxLength": 255, "description": "External id of an existing recipient."},
            component.ref,
        ]}
