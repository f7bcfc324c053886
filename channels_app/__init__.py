"""Channel backends: the contract, the registry, built-in backends and provider accounts.

This app knows nothing of messages, recipients or deliveries: a backend receives an
immutable :class:`~channels_app.message.OutboundMessage` and returns a
:class:`~channels_app.message.SendResult` or raises a channel error.
"""
