"""In-app backend: a batch is stored with one INSERT, and a delivery stored before is not
stored again (a retried task does not duplicate inbox entries)."""
import uuid

import pytest

from channels_app.backends.inapp import InAppBackend
from channels_app.message import OutboundMessage, SendResult
from channels_app.models import InboxEntry

pytestmark = pytest.mark.django_db


def message(user: str, n: int) -> OutboundMessage:
    return OutboundMessage(
        delivery_id=str(uuid.uuid4()), kind="inapp", address=user,
        content={"title": f"Hello {n}", "body": f"Code {n}", "url": "/codes"},
        metadata={"template": "codes"},
    )


def test_batch_is_stored_in_one_query(django_assert_num_queries):
    messages = [message(f"user-{n % 3}", n) for n in range(10)]

    with django_assert_num_queries(1):
        outcomes = list(InAppBackend().send_many(messages))

    assert [(m, o) for m, o in outcomes] == [(m, SendResult(provider_message_id=m.delivery_id)) for m in messages]
    stored = {str(e.delivery_id): e for e in InboxEntry.objects.all()}
    assert set(stored) == {m.delivery_id for m in messages}
    entry = stored[messages[4].delivery_id]
    assert (entry.recipient_key, entry.title, entry.body, entry.url, entry.data) == (
        "user-1", "Hello 4", "Code 4", "/codes", {"template": "codes"})


def test_repeat_of_a_delivery_stores_nothing_new():
    first = message("user-1", 1)
    InAppBackend().send(first)
    again = OutboundMessage(delivery_id=first.delivery_id, kind="inapp", address="user-1",
                            content={"title": "changed"})

    outcomes = list(InAppBackend().send_many([again, message("user-1", 2)]))

    assert len(outcomes) == 2
    assert InboxEntry.objects.count() == 2
    assert InboxEntry.objects.get(delivery_id=first.delivery_id).title == "Hello 1"
