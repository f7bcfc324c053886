"""Which backend class serves which name.

Built-in backends are listed here; third-party ones register through the Python entry point
group ``notifyhub.channels`` (``name = "package.module:BackendClass"``), so a new provider is
one installed module and no edit in notifyhub. Unknown names raise
``ChannelConfigurationError`` naming the backend.
"""
from functools import cache
from importlib import import_module
from importlib.metadata import entry_points

from channels_app.base import ChannelBackend
from channels_app.errors import ChannelConfigurationError

ENTRY_POINT_GROUP = "notifyhub.channels"

BUILTIN_BACKENDS = {
    "console": "channels_app.backends.console:ConsoleEmailBackend",
    "smtp": "channels_app.backends.email:SmtpBackend",
    "inapp": "channels_app.backends.inapp:InAppBackend",
    "webhook": "channels_app.backends.webhook:WebhookBackend",
}


def _load(path: str) -> type[ChannelBackend]:
    module_name, _, attr = path.partition(":")
    return getattr(import_module(module_name), attr)


@cache
def all_backends() -> dict[str, type[ChannelBackend]]:
    from channels_app.backends.anymail import anymail_backends

    backends = {name: _load(path) for name, path in BUILTIN_BACKENDS.items()}
    backends.update({cls.name: cls for cls in anymail_backends()})
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        cls = entry_point.load()
        if not (isinstance(cls, type) and issubclass(cls, ChannelBackend)):
            raise ChannelConfigurationError(
                f"Entry point {entry_point.name!r} in {ENTRY_POINT_GROUP} is not a ChannelBackend."
            )
        backends[entry_point.name] = cls
    return backends


def backend_class(name: str) -> type[ChannelBackend]:
    try:
        return all_backends()[name]
    except KeyError:
        raise ChannelConfigurationError(f"Unknown channel backend {name!r}.") from None


def backend_choices(kind: str | None = None) -> list[tuple[str, str]]:
    return sorted(
        (name, cls.label or name)
        for name, cls in all_backends().items()
        if kind is None or cls.kind == kind
    )


def default_backend_for(kind: str) -> type[ChannelBackend] | None:
    """The backend that works with no provider account for ``kind``, if there is one."""
    for cls in all_backends().values():
        if cls.kind == kind and not cls.needs_account:
            return cls
    return None
