"""Reads: which provider account serves a channel kind."""
from channels_app.errors import ChannelConfigurationError
from channels_app.models import ChannelConfig
from channels_app.registry import default_backend_for


def channel_configs_for(*, kind: str, app: str = "") -> list[ChannelConfig]:
    """Enabled accounts of ``kind`` that can reach an address of ``app``, best priority first."""
    configs = ChannelConfig.objects.filter(kind=kind, enabled=True).order_by("priority", "id")
    return [c for c in configs if _accepts(c, app)]


def channel_config_for(*, kind: str, app: str = "") -> ChannelConfig | None:
    """The enabled account of ``kind`` (for ``app``) with the best (lowest) priority."""
    configs = channel_configs_for(kind=kind, app=app)
    return configs[0] if configs else None


def _accepts(config: ChannelConfig, app: str) -> bool:
    if not app:
        return True
    try:
        return config.backend_class.accepts_app(app=app, options=config.options or {}, account=config.name)
    except ChannelConfigurationError:
        return False


def channel_kinds_available() -> set[str]:
    """Kinds that can deliver right now: an enabled account, or a backend needing none."""
    from channels_app.kinds import ChannelKind

    kinds = set(ChannelConfig.objects.filter(enabled=True).values_list("kind", flat=True).distinct())
    return kinds | {kind for kind in ChannelKind.values if default_backend_for(kind)}
