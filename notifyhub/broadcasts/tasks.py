"""Celery entry points: load by id, call a service."""
from celery import shared_task

from notifyhub.broadcasts import imports, runs

TASK_OPTIONS = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(name="notifyhub.import_recipients", **TASK_OPTIONS)
def import_recipients(import_id: int) -> str:
    return imports.import_run(import_id=import_id)


@shared_task(name="notifyhub.broadcast_run", **TASK_OPTIONS)
def broadcast_run(broadcast_id: int) -> str | None:
    run = runs.broadcast_run(broadcast_id=broadcast_id)
    return str(run.message_id) if run else None
