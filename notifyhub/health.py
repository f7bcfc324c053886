"""``/healthz`` (the process answers) and ``/readyz`` (its database and broker answer)."""
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

from notifyhub.celery import app as celery_app


@never_cache
def healthz(request):
    return JsonResponse({"status": "ok"})


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def _broker() -> str:
    with celery_app.connection_for_write(url=settings.CELERY_BROKER_URL) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    return "ok"


@never_cache
def readyz(request):
    checks, ready = {}, True
    for name, check in (("database", _database), ("broker", _broker)):
        try:
            checks[name] = check()
        except Exception as exc:  # any failure means "not ready"; say which and why
            checks[name] = f"down: {exc.__class__.__name__}: {exc}"[:300]
            ready = False
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503)
