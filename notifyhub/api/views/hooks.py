"""Provider callbacks: ``POST /hooks/channels/<account name>/`` (or ``…/<callback token>/``).

The provider is not an API client, so there is no API key here: the backend of the named
account verifies the provider's own signature (or the account's callback token) and parses
the report; anything that fails verification is answered 403 and changes nothing. An unknown
account, or one that takes no callbacks, answers the same 403, so account names cannot be
probed.

Aliyun and Tencent do not sign their reports: the account's callback token goes in the URL,
best as the last path segment (``/hooks/channels/aliyun-main/<token>/``); the older
``?token=<token>`` form still works. Both are redacted from the access log and Django's logs
(:mod:`notifyhub.log_redaction`).
"""
import dataclasses
import json
import logging

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from channels_app.base import CallbackRejected, CallbackRequest
from channels_app.errors import ChannelConfigurationError
from channels_app.models import ChannelConfig
from channels_app.services import channel_backend_build
from notifyhub.api.parsers import json_depth, json_problems, max_json_depth
from notifyhub.messaging.services.receipts import receipts_apply

logger = logging.getLogger(__name__)


def _json_body_refusal(request) -> HttpResponse | None:
    """A JSON body nested deeper than the limit, or carrying text that cannot be stored, is
    refused with 400 before any parser (the backend's, anymail's) recurses into it."""
    body = request.body
    if body.lstrip()[:1] not in (b"[", b"{"):
        return None
    limit = max_json_depth()
    if json_depth(body) > limit:
        return JsonResponse({"body": [f"JSON nested more than {limit} levels deep."]}, status=400)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None  # not JSON after all: the backend answers for its own format
    problems = json_problems(data, max_depth=limit)
    if problems:
        return JsonResponse({"body": problems}, status=400)
    return None


def _callback_request(request) -> CallbackRequest:
    if settings.NOTIFYHUB_PUBLIC_URL:  # behind a proxy the provider signed the public URL
        url = settings.NOTIFYHUB_PUBLIC_URL + request.get_full_path()
    else:
        url = request.build_absolute_uri()
    form = {key: request.POST.get(key) for key in request.POST} if request.content_type.startswith(
        "application/x-www-form-urlencoded") else {}
    return CallbackRequest(
        method=request.method, url=url, headers=request.headers, body=request.body, form=form,
        query={key: request.GET.get(key) for key in request.GET},
    )


def _forbidden() -> HttpResponse:
    return HttpResponse("forbidden", status=403, content_type="text/plain")


@csrf_exempt
@require_POST
def channel_callback(request, name: str, token: str = ""):
    if "\x00" in name:  # PostgreSQL refuses NUL in a string literal: no account has such a name
        return _forbidden()
    refusal = _json_body_refusal(request)
    if refusal is not None:
        return refusal
    config = ChannelConfig.objects.filter(name=name).first()
    if config is None:
        logger.warning("Refused a callback for an unknown account")
        return _forbidden()
    try:
        backend = channel_backend_build(kind=config.kind, config=config)
    except ChannelConfigurationError as exc:
        logger.error("Callback for misconfigured account %s: %s", name, exc)
        return HttpResponse("account misconfigured", status=503, content_type="text/plain")
    callback = _callback_request(request)  # read the body before anything else touches it
    if token:  # the path form: the backend reads the token where the query form puts it
        callback = dataclasses.replace(callback, query={**callback.query, "token": token})
    try:
        receipts = backend.receipts(callback)
    except NotImplementedError:
        logger.warning("Refused a callback for %s, which takes none", name)
        return _forbidden()
    except CallbackRejected as exc:
        logger.warning("Rejected callback for %s: %s", name, exc)
        return _forbidden()
    result = receipts_apply(source=config.backend, receipts=receipts, channel=config.kind, config_id=config.pk)
    logger.info("Callback for %s: %s", name, result)
    status, content_type, body = backend.receipt_response(receipts)
    return HttpResponse(body, status=status, content_type=content_type)


def anymail_patterns():
    """anymail's webhook URLs, refused (403) while no ``ANYMAIL_WEBHOOK_SECRET`` is set:
    anymail alone would only log a warning and accept tracking posts from anyone."""
    from functools import wraps

    from anymail.urls import urlpatterns
    from django.urls import URLPattern

    def guarded(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not (getattr(settings, "ANYMAIL", None) or {}).get("WEBHOOK_SECRET"):
                logger.warning("Refused an anymail webhook: ANYMAIL_WEBHOOK_SECRET is not set")
                return HttpResponse("tracking webhooks are disabled: set ANYMAIL_WEBHOOK_SECRET", status=403,
                                    content_type="text/plain")
            return _json_body_refusal(request) or view(request, *args, **kwargs)
        return csrf_exempt(wrapper)

    return [URLPattern(p.pattern, guarded(p.callback), p.default_args, p.name) for p in urlpatterns]
