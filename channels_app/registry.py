"""Which backend class serves which name.

Built-in backends are found, not listed: every ``ChannelBackend`` subclass with a ``name``
defined in a module of ``channels_app.backends`` is registered, so a new provider is one new
module and no edit elsewhere. Third-party ones register through the Python entry point group
``notifyhub.channels`` (``name = "package.module:BackendClass"``). Unknown names raise
``ChannelConfigurationError`` naming the backend.
"""
import inspect
import logging
import pkgutil
from functools import cache
from importlib import import_module
from importlib.metadata import entry_points

from channels_app.base import ChannelBackend
from channels_app.errors import ChannelConfigurationError

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "notifyhub.channels"

BUILTIN_PACKAGE = "channels_app.backends"
#: Why each broken plugin could not be loaded, filled by ``all_backends()``.
_broken_plugins: dict[str, str] = {}


def builtin_backends() -> dict[str, type[ChannelBackend]]:
    """Concrete backends defined in the modules of ``channels_app.backends``."""
    package = import_module(BUILTIN_PACKAGE)
    found = {}
    for info in pkgutil.iter_modules(package.__path__):
        try:
            module = import_module(f"{BUILTIN_PACKAGE}.{info.name}")
        except Exception as exc:  # a missing optional library must not take every channel down
            _broken_plugins[info.name] = f"cannot import {BUILTIN_PACKAGE}.{info.name}: {exc!r}"
            logger.error("Built-in channel backend module %s: %r", info.name, exc)
            continue
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if (issubclass(cls, ChannelBackend) and cls.__module__ == module.__name__
                    and isinstance(cls.__dict__.get("name"), str)):
                found[cls.name] = cls
    return found




@cache
def all_backends() -> dict[str, type[ChannelBackend]]:
    """Backends by name. A plugin that fails to import (or is not a ``ChannelBackend``) is
    logged and left out, so one broken package does not take every channel down; asking
    for it by name with :func:`backend_class` says why."""
    from channels_app.backends.anymail import anymail_backends

    _broken_plugins.clear()
    backends = builtin_backends()
    backends.update({cls.name: cls for cls in anymail_backends()})
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = entry_point.load()
        except Exception as exc:
            reason = f"cannot load {entry_point.value!r}: {exc!r}"
        else:
            if isinstance(cls, type) and issubclass(cls, ChannelBackend):
                backends[entry_point.name] = cls
                continue
            reason = f"{entry_point.value!r} is not a ChannelBackend subclass"
        _broken_plugins[entry_point.name] = reason
        logger.error("Channel backend plugin %r in %s: %s", entry_point.name, ENTRY_POINT_GROUP, reason)
    return backends


def backend_class(name: str) -> type[ChannelBackend]:
    try:
        return all_backends()[name]
    except KeyError:
        reason = _broken_plugins.get(name)
        if reason:
            raise ChannelConfigurationError(f"Channel backend plugin {name!r} is broken: {reason}.") from None
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
