"""The API's edge: refuse oversized bodies before anything parses them, and answer every error
under ``/api/`` as JSON — including the ones Django produces before DRF sees the request (a
URL that matches no route answers Django's HTML 404 otherwise)."""
from http import HTTPStatus

from django.conf import settings
from django.http import JsonResponse


def _json_error(status: int, detail: str) -> JsonResponse:
    return JsonResponse({"detail": detail}, status=status)


DRAIN_CHUNK = 64 * 1024


def _drain(request, length: int) -> None:
    """Read and drop an oversized body (up to ``NOTIFYHUB_MAX_DRAIN_BYTES``, default 16 MiB)
    before answering 413: a server that closes a connection with unread request bytes makes the
    kernel reset it, and a client still sending (``requests``, ``curl`` after ``100 Continue``)
    then sees "connection reset" instead of the answer. Bodies beyond the bound are not read."""
    bound = int(getattr(settings, "NOTIFYHUB_MAX_DRAIN_BYTES", 16 * 1024 * 1024))
    if length > bound:
        return
    remaining = length
    try:
        while remaining > 0:
            chunk = request.read(min(DRAIN_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
    except OSError:  # the client gave up; nothing to answer
        pass


NUL_MESSAGE = "Contains a NUL character (\\u0000), which cannot be stored or looked up."


def _nul_refusal(request) -> JsonResponse | None:
    """A NUL in the path or a query parameter reaches PostgreSQL as a string literal it refuses
    (a 500 on any lookup); answer 400 naming where it is instead."""
    if "\x00" in request.path_info:
        return JsonResponse({"path": [NUL_MESSAGE]}, status=400)
    errors = {key.replace("\x00", "\\u0000"): [NUL_MESSAGE] for key, values in request.GET.lists()
              if "\x00" in key or any("\x00" in value for value in values)}
    return JsonResponse(errors, status=400) if errors else None


def _phrase(status: int) -> str:
    if status == 404:
        return "Not found."
    try:
        return f"{HTTPStatus(status).phrase}."
    except ValueError:
        return "Error."


class BodySizeLimitMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not request.path.startswith("/api/"):
            return self.get_response(request)
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = settings.NOTIFYHUB_MAX_BODY_BYTES
        if length > limit:
            _drain(request, length)
            return JsonResponse(
                {"body": [f"The request body is {length} bytes; the limit is {limit} bytes."]}, status=413
            )
        refusal = _nul_refusal(request)
        if refusal is not None:
            return refusal
        response = self.get_response(request)
        if response.status_code >= 400 and not response.get("Content-Type", "").startswith("application/json"):
            replacement = _json_error(response.status_code, _phrase(response.status_code))
            for header in ("Allow", "Retry-After", "WWW-Authenticate"):
                if header in response:
                    replacement[header] = response[header]
            return replacement
        return response
