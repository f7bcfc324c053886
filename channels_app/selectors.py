"""Reads: which provider account serves a channel kind."""
from channels_app.models import ChannelConfig
from channels_app.registry import default_backend_for


def channel_config_for(*, kind: str) -> ChannelConfig | None:
    """The enabled account of ``kind`` with the best (lowest) priority."""
    return ChannelConfig.objects.filter(kind=kind, enabled=True).order_by("priority", "id").first()


def channel_kinds_available() -> set[str]:
    """Kinds that can deliver right now: an enabled account, or a backend needing none."""
    from channels_app.kinds import ChannelKind

    kinds = set(ChannelConfig.objects.filter(enabled=True).values_list("kind", flat=True).distinct())
    return kinds | {kind for kind in ChannelKind.values if default_backend_for(kind)}
