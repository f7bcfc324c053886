"""In-app inbox: stores the rendered message for the recipient; needs no provider account."""
from collections.abc import Iterable, Iterator

from channels_app.base import ChannelBackend, Outcome
from channels_app.kinds import ChannelKind
from channels_app.message import OutboundMessage, SendResult


class InAppBackend(ChannelBackend):
    kind = ChannelKind.INAPP
    name = "inapp"
    label = "In-app inbox"
    needs_account = False
    writes_hub_database = True

    def send(self, message: OutboundMessage) -> SendResult:
        return next(iter(self.send_many([message])))[1]

    def send_many(self, messages: Iterable[OutboundMessage]) -> Iterator[tuple[OutboundMessage, Outcome]]:
        """One INSERT for the whole batch; a delivery stored before is not stored twice."""
        from channels_app.models import InboxEntry

        messages = list(messages)
        InboxEntry.objects.bulk_create(
            [
                InboxEntry(
                    recipient_key=m.address, delivery_id=m.delivery_id,
                    title=m.content.get("title", ""), body=m.content.get("body", ""),
                    url=m.content.get("url", ""), data=dict(m.metadata),
                )
                for m in messages
            ],
            ignore_conflicts=True,
        )
        for m in messages:
            yield m, SendResult(provider_message_id=str(m.delivery_id))
