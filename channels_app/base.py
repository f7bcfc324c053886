"""The channel-backend contract.

A backend is a class with ``kind``, ``name``, an ``Options`` serializer (its option schema,
with the secret fields listed in ``secret_fields``) and ``send()``. ``send_many()`` and
``open()``/``close()`` let a backend reuse one connection for a whole batch.

Backends that hear back from their provider (SMS delivery reports, status callbacks)
implement ``receipts()``: the hub hands them the raw callback request, they verify the
provider's signature and return plain :class:`Receipt` values; the hub applies them.
"""
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import ClassVar

from rest_framework import serializers

from channels_app.concurrency import send_sequentially
from channels_app.errors import ChannelError
from channels_app.message import OutboundMessage, SendResult

Outcome = SendResult | ChannelError


class NoOptions(serializers.Serializer):
    pass


class CallbackRejected(Exception):
    """A provider callback failed verification (bad signature, unknown account); answered 403."""


@dataclass(frozen=True, slots=True)
class CallbackRequest:
    """A provider's HTTP callback as received: ``url`` is the absolute URL the provider called
    (scheme, host, path and query string), ``headers`` is case-insensitive, ``form`` holds the
    decoded form fields (``application/x-www-form-urlencoded``) and ``body`` the raw bytes."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes = b""
    form: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Receipt:
    """What a provider reported about one message it accepted earlier.

    ``status`` is one of ``delivered``, ``failed``, ``bounced``, ``complained`` (these move
    the delivery forward) or ``opened``, ``clicked`` (recorded as engagement). ``event_id``
    identifies the report so that a repeat is applied once; leave it blank and the hub derives
    one from the other fields.
    """

    provider_message_id: str
    status: str
    event_id: str = ""
    detail: str = ""
    at: datetime | None = None


class ChannelBackend:
    kind: ClassVar[str]
    name: ClassVar[str]
    label: ClassVar[str] = ""
    Options: ClassVar[type[serializers.Serializer]] = NoOptions
    secret_fields: ClassVar[frozenset[str]] = frozenset()
    #: False for backends that work with no provider account (in-app).
    needs_account: ClassVar[bool] = True
    #: The provider's own sending limit for one account, e.g. ``"20/m"`` or ``"1/s"`` ("" = none).
    default_rate: ClassVar[str] = ""
    #: The provider reports delivery later (receipts, tracking webhooks), so ``sent`` is not final.
    reports_delivery: ClassVar[bool] = False
    #: ``send_many`` only writes to the hub's own database (in-app): the hub may claim, send and
    #: record a batch in one transaction, so it is sent exactly once.
    writes_hub_database: ClassVar[bool] = False

    def __init__(self, *, options: dict | None = None, account: str = "", callback_url: str = ""):
        self.options = dict(options or {})
        self.account = account
        #: Absolute URL of this account's callback endpoint ("" when no public URL is configured).
        self.callback_url = callback_url

    # --- options ---------------------------------------------------------------------------
    @classmethod
    def validate_options(cls, data: dict) -> dict:
        """Validate options and secrets together; raise DRF ``ValidationError`` naming fields."""
        serializer = cls.Options(data=data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    @classmethod
    def option_fields(cls) -> dict:
        return dict(cls.Options().fields)

    # --- addresses -------------------------------------------------------------------------
    @classmethod
    def validate_address(cls, address: str) -> str:
        """Return the normalised address or raise ``InvalidAddressError``."""
        return address

    @classmethod
    def accepts_app(cls, *, app: str, options: Mapping, account: str) -> bool:
        """Whether this account can send to a contact point registered for ``app``.

        ``app`` is the contact point's app: a push platform (``fcm``, ``apns``, ``webpush``),
        a WeChat appid, or a chat account name; blank means any account of the kind.
        """
        return not app or app in (cls.name, account)

    # --- sending ---------------------------------------------------------------------------
    def open(self) -> None:
        """Open connections reused by the following sends."""

    def close(self) -> None:
        """Release what ``open`` acquired."""

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc_info):
        self.close()

    def send(self, message: OutboundMessage) -> SendResult:
        raise NotImplementedError

    def send_many(self, messages: Iterable[OutboundMessage]) -> Iterator[tuple[OutboundMessage, Outcome]]:
        """Yield each message with its outcome as soon as it is known; an unexpected exception
        in one send is that message's outcome (see :mod:`channels_app.concurrency`)."""
        yield from send_sequentially(self.send, messages)

    # --- callbacks -------------------------------------------------------------------------
    def receipts(self, request: CallbackRequest) -> list[Receipt]:
        """Verify and parse a provider callback; raise ``CallbackRejected`` when it fails
        verification. Backends that receive none leave this unimplemented (answered 404)."""
        raise NotImplementedError

    def receipt_response(self, receipts: list[Receipt]) -> tuple[int, str, bytes]:
        """The ``(status, content type, body)`` the provider expects as acknowledgement."""
        return 204, "text/plain", b""
