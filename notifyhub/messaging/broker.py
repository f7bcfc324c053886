"""Asking the broker which task messages it still holds, to tell a lost message from a backlog.

A delivery that has waited in ``queued`` for a while is either behind a long backlog (its task
message is still in a queue, or reserved by a worker) or lost (Redis was flushed, a message was
deleted, a publish failed after commit). Only the lost ones are enqueued again. With Redis the
answer is read from the queue lists and kombu's ``unacked`` hash; with the embedded filesystem
broker from the message files. ``None`` means the transport cannot be inspected.
"""
import json
import logging
from collections.abc import Iterable
from pathlib import Path

from celery import current_app

logger = logging.getLogger(__name__)
#: kombu's Redis transport keeps one list per priority step, named ``<queue>\x06\x16<step>``.
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = ("", "1", "2", "3", "4", "5", "6", "7", "8", "9")


def _task_id(payload) -> str | None:
    try:
        return payload["headers"]["id"]
    except (KeyError, TypeError):
        return payload.get("properties", {}).get("correlation_id") if isinstance(payload, dict) else None


def broker_task_ids(*, queues: Iterable[str]) -> set[str] | None:
    """Ids of the task messages waiting in ``queues`` or reserved by a worker; None if unknown."""
    url = current_app.conf.broker_url or ""
    try:
        if url.startswith(("redis://", "rediss://", "unix://")):
            return _redis_ids(list(queues))
        if url.startswith("filesystem://"):
            return _filesystem_ids()
    except Exception:
        logger.exception("Reading the broker's queues failed")
    return None


def _redis_ids(queues: list[str]) -> set[str]:
    ids: set[str] = set()
    with current_app.connection_for_read() as connection:
        client = connection.default_channel.client
        pipe = client.pipeline(transaction=False)
        keys = [f"{queue}{PRIORITY_SEPARATOR}{step}" if step else queue
                for queue in queues for step in PRIORITY_STEPS]
        for key in keys:
            pipe.lrange(key, 0, -1)
        pipe.hvals(connection.default_channel.unacked_key)
        *lists, unacked = pipe.execute()
        for raw in (item for items in lists for item in items):
            ids.add(_task_id(json.loads(raw)))
        for raw in unacked:
            ids.add(_task_id(json.loads(raw)[0]))
    ids.discard(None)
    return ids


def _filesystem_ids() -> set[str]:
    options = current_app.conf.broker_transport_options or {}
    folder = Path(options.get("data_folder_in", ""))
    ids: set[str] = set()
    for path in folder.glob("*.msg") if folder.is_dir() else ():
        try:
            ids.add(_task_id(json.loads(path.read_text())))
        except (OSError, ValueError):
            continue  # consumed while we read it
    ids.discard(None)
    return ids
