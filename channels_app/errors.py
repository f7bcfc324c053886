"""Channel errors.

``TransientChannelError`` means "try again later", ``PermanentChannelError`` means "this
delivery can never succeed as it is". ``ChannelConfigurationError`` is deliberately outside
the ``ChannelError`` family so that no ``except ChannelError`` can swallow a broken setup.
"""


class ChannelError(Exception):
    """A provider refused or failed a send. Carries what the provider said."""

    def __init__(self, message: str, *, code: str = "", status: int | None = None, response: str = ""):
        super().__init__(message)
        self.code = code
        self.status = status
        self.response = response[:2000]

    @property
    def detail(self) -> str:
        parts = [str(self)]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.code:
            parts.append(f"code={self.code}")
        if self.response:
            parts.append(f"response={self.response}")
        return " ".join(parts)


class TransientChannelError(ChannelError):
    """Retry later; ``retry_after`` (seconds) is the provider's own hint, if it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class PermanentChannelError(ChannelError):
    """Never retry this delivery."""


class InvalidAddressError(PermanentChannelError, ValueError):
    """The address cannot be used on this channel (malformed e-mail, bad phone number...)."""


class ChannelConfigurationError(Exception):
    """The provider account is misconfigured (unknown backend, missing option, bad key)."""


class DeadAddressError(InvalidAddressError):
    """The address is gone for good (unregistered device token, expired push subscription,
    unfollowed WeChat user). The hub deactivates the contact point so it is not used again."""


class AccountError(PermanentChannelError):
    """The provider account cannot send at all (bad credentials, quota exhausted, sender
    disabled). The delivery fails on this account but may go out through another one, and
    the account's circuit breaker opens."""
