"""Writes and actions on provider accounts."""
import uuid

from channels_app.base import ChannelBackend
from channels_app.errors import ChannelConfigurationError
from channels_app.message import OutboundMessage, SendResult
from channels_app.models import ChannelConfig
from channels_app.registry import default_backend_for


def channel_backend_build(*, kind: str, config: ChannelConfig | None) -> ChannelBackend:
    """An unopened backend instance for ``config`` (or the account-less default for ``kind``)."""
    if config is None:
        cls = default_backend_for(kind)
        if cls is None:
            raise ChannelConfigurationError(f"No enabled {kind} channel is configured.")
        return cls(options={}, account="")
    from django.core.exceptions import ValidationError

    try:
        options = config.validated_options()
    except ValidationError as exc:
        raise ChannelConfigurationError(f"{config.name}: {exc.messages}") from None
    return config.backend_class(options=options, account=config.name, callback_url=channel_callback_url(config))


def channel_callback_url(config: ChannelConfig) -> str:
    """Where the provider should report on this account's messages ("" without a public URL)."""
    from django.conf import settings
    from django.urls import reverse

    if not settings.NOTIFYHUB_PUBLIC_URL:
        return ""
    return settings.NOTIFYHUB_PUBLIC_URL + reverse("channel-callback", args=[config.name])


def channel_config_save(*, config: ChannelConfig, secrets: dict | None = None) -> ChannelConfig:
    """Validate and save; ``secrets`` replaces only the keys given (blank keeps the old value).

    A secret field put among the plain options is moved to the encrypted secrets, so it is
    never stored in clear text.
    """
    try:
        secret_fields = config.backend_class.secret_fields
    except ChannelConfigurationError:
        secret_fields = frozenset()  # full_clean() reports the unknown backend
    options = dict(config.options or {})
    moved = {key: options.pop(key) for key in list(options) if key in secret_fields}
    if moved:
        config.options = options
        secrets = {**moved, **(secrets or {})}
    if secrets:
        merged = {**config.secrets, **{k: v for k, v in secrets.items() if v not in ("", None)}}
        config.set_secrets(merged)
    config.full_clean()
    config.save()
    return config


def channel_test_send(*, config: ChannelConfig, address: str, content: dict | None = None) -> SendResult:
    """Send a fixed test message through ``config`` (``content`` parts override the fixed ones,
    e.g. a provider template code); provider errors propagate to the caller."""
    backend = channel_backend_build(kind=config.kind, config=config)
    address = backend.validate_address(address)
    message = OutboundMessage(
        delivery_id=str(uuid.uuid4()), kind=config.kind, address=address,
        content={
            "subject": "notifyhub test message", "text": f"Test message from channel {config.name}.",
            "html": f"<p>Test message from channel <b>{config.name}</b>.</p>",
            "title": "notifyhub test message", "body": f"Test message from channel {config.name}.",
            "payload": {"test": True, "channel": config.name},
            "markdown": f"**notifyhub** test message from channel `{config.name}`.",
            **(content or {}),
        },
        metadata={"template": "notifyhub.test"},
    )
    with backend:
        return backend.send(message)
