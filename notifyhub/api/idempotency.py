"""``Idempotency-Key`` for the send API.

The record is committed as ``in_progress`` before the work starts, so a concurrent duplicate
meets the unique constraint at once and gets ``409``; the finished answer is stored in the
same transaction as the message, so a replay returns exactly the first answer; the same key
with a different body is ``422``. A record left ``in_progress`` by a crashed process expires.
"""
import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from rest_framework import status
from rest_framework.exceptions import APIException

from notifyhub.api.models import IdempotencyRecord

ABANDONED_AFTER = timedelta(minutes=2)


class IdempotencyConflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "A request with this Idempotency-Key is still being processed."
    default_code = "idempotency_conflict"


class IdempotencyMismatch(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_detail = "This Idempotency-Key was used with a different request body."
    default_code = "idempotency_mismatch"


@dataclass
class Claim:
    record: IdempotencyRecord | None = None  # ours to finish
    replay: IdempotencyRecord | None = None  # an earlier answer to return


def request_hash(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def idempotency_claim(*, api_key, key: str, data) -> Claim:
    digest = request_hash(data)
    for _ in range(2):
        try:
            with transaction.atomic():
                return Claim(record=IdempotencyRecord.objects.create(api_key=api_key, key=key, request_hash=digest))
        except IntegrityError:
            existing = IdempotencyRecord.objects.filter(api_key=api_key, key=key).first()
            if existing is None:
                continue
            if existing.request_hash != digest:
                raise IdempotencyMismatch() from None
            if existing.state == IdempotencyRecord.State.DONE:
                return Claim(replay=existing)
            if existing.created_at > timezone.now() - ABANDONED_AFTER:
                raise IdempotencyConflict() from None
            existing.delete()
    raise IdempotencyConflict()


def idempotency_finish(*, record: IdempotencyRecord, status_code: int, body) -> None:
    record.state = IdempotencyRecord.State.DONE
    record.response_status = status_code
    record.response_body = body
    record.save(update_fields=["state", "response_status", "response_body"])


def idempotency_release(*, record: IdempotencyRecord) -> None:
    """Forget a claim whose request failed, so the client may fix it and retry with the key."""
    record.delete()
