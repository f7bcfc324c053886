"""The plain values that cross the boundary between the hub and a backend."""
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class OutboundMessage:
    """One rendered message for one address.

    ``delivery_id`` is stable across retries, so receivers can deduplicate on it.
    ``content`` holds the rendered parts for the channel kind (``subject``/``text``/``html``
    for email, ``title``/``body``/``url`` for in-app, ``payload`` for webhooks).
    """

    delivery_id: str
    kind: str
    address: str
    content: Mapping = field(default_factory=dict)
    metadata: Mapping = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "content", MappingProxyType(dict(self.content)))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))


@dataclass(frozen=True, slots=True)
class SendResult:
    provider_message_id: str = ""
    detail: str = ""
