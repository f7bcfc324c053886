"""Celery entry points: load by id, call a service. Names are stable; queues are set by callers."""
from celery import shared_task

from notifyhub.messaging.queueing import MAINTENANCE_QUEUE, task_send_on_commit
from notifyhub.messaging.services import cancel, deliver, dispatch, sweeper

TASK_OPTIONS = {"acks_late": True, "reject_on_worker_lost": True, "ignore_result": True}


@shared_task(name="notifyhub.dispatch_message", **TASK_OPTIONS)
def dispatch_message(message_id: str) -> int:
    return dispatch.message_dispatch_start(message_id=message_id)


@shared_task(name="notifyhub.dispatch_chunk", bind=True, max_retries=None, **TASK_OPTIONS)
def dispatch_chunk(self, chunk_id: int) -> int:
    try:
        return dispatch.message_dispatch_chunk(chunk_id=chunk_id)
    except dispatch.ChunkRetry as retry:  # attempts are counted on the chunk row, not by Celery
        raise self.retry(countdown=retry.countdown) from retry


@shared_task(name="notifyhub.deliver_batch", **TASK_OPTIONS)
def deliver_batch(delivery_ids: list[str], kind: str = "") -> int:
    return deliver.deliveries_send(delivery_ids=delivery_ids, kind=kind)


@shared_task(name="notifyhub.release_due", **TASK_OPTIONS)
def release_due() -> dict:
    return sweeper.due_release()


@shared_task(name="notifyhub.sweep_stuck", **TASK_OPTIONS)
def sweep_stuck() -> dict:
    return sweeper.stuck_sweep()


@shared_task(name="notifyhub.release_cancelled", **TASK_OPTIONS)
def release_cancelled(message_id: str, after: str = "") -> str:
    """Give back a cancelled message's dedup windows and cap units, a page per task."""
    last = cancel.cancelled_reservations_release(message_id=message_id, after=after)
    if last:
        task_send_on_commit("notifyhub.release_cancelled", [message_id, last], MAINTENANCE_QUEUE)
    return last
