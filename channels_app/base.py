"""The channel-backend contract.

A backend is a class with ``kind``, ``name``, an ``Options`` serializer (its option schema,
with the secret fields listed in ``secret_fields``) and ``send()``. ``send_many()`` and
``open()``/``close()`` let a backend reuse one connection for a whole batch.
"""
from collections.abc import Iterable, Iterator
from typing import ClassVar

from rest_framework import serializers

from channels_app.errors import ChannelError
from channels_app.message import OutboundMessage, SendResult

Outcome = SendResult | ChannelError


class NoOptions(serializers.Serializer):
    pass


class ChannelBackend:
    kind: ClassVar[str]
    name: ClassVar[str]
    label: ClassVar[str] = ""
    Options: ClassVar[type[serializers.Serializer]] = NoOptions
    secret_fields: ClassVar[frozenset[str]] = frozenset()
    #: False for backends that work with no provider account (in-app).
    needs_account: ClassVar[bool] = True

    def __init__(self, *, options: dict | None = None, account: str = ""):
        self.options = dict(options or {})
        self.account = account

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
        """Yield each message with its outcome as soon as it is known."""
        for message in messages:
            try:
                yield message, self.send(message)
            except ChannelError as error:
                yield message, error
