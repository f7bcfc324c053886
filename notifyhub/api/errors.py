"""Every error answers JSON; service-level rejections become field-level 400s."""
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import ProtectedError
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from notifyhub.messaging.services.accept import MessageRejected


def exception_handler(exc, context):
    if isinstance(exc, MessageRejected):
        return Response(exc.errors, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, DjangoValidationError):
        body = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        return Response(body, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, ProtectedError):
        return Response({"detail": "Still in use: " + ", ".join(sorted({str(o) for o in exc.protected_objects})[:5])},
                        status=status.HTTP_409_CONFLICT)
    return drf_exception_handler(exc, context)
