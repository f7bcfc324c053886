"""Registry: a backend installed as a distribution with a ``notifyhub.channels`` entry point
is discovered; a broken plugin is reported by name without breaking the other backends;
unknown names are configuration errors."""
import importlib
import sys
import textwrap

import pytest

from channels_app import registry
from channels_app.base import ChannelBackend
from channels_app.errors import ChannelConfigurationError


def install_plugin(path, dist: str, module: str, source: str, entry_points: str):
    """Write a module and its ``.dist-info`` the way pip installs a distribution."""
    (path / f"{module}.py").write_text(textwrap.dedent(source))
    info = path / f"{dist}-0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist.replace('_', '-')}\nVersion: 0.0\n")
    (info / "entry_points.txt").write_text(textwrap.dedent(entry_points))


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    registry.all_backends.cache_clear()
    yield tmp_path
    registry.all_backends.cache_clear()  # the next caller rediscovers without the plugin
    for name in ("nh_test_plugin", "nh_broken_plugin"):
        sys.modules.pop(name, None)


def test_entry_point_backend_is_discovered(plugin_dir):
    install_plugin(plugin_dir, "nh_test_plugin", "nh_test_plugin", """
        from channels_app.base import ChannelBackend
        from channels_app.message import SendResult

        class Backend(ChannelBackend):
            kind = "sms"
            name = "sms_test"

            def send(self, message):
                return SendResult(provider_message_id="sms-1")
        """, "[notifyhub.channels]\nsms_test = nh_test_plugin:Backend\n")

    cls = registry.backend_class("sms_test")

    assert cls is sys.modules["nh_test_plugin"].Backend
    assert issubclass(cls, ChannelBackend)
    assert ("sms_test", "sms_test") in registry.backend_choices("sms")


def test_broken_plugin_is_named_and_does_not_break_the_others(plugin_dir):
    install_plugin(plugin_dir, "nh_broken_plugin", "nh_broken_plugin", """
        raise ImportError("vendor SDK missing")

        """, "[notifyhub.channels]\nsms_broken = nh_broken_plugin:Backend\nsms_dict = json:JSONDecoder\n")

    assert registry.backend_class("smtp").name == "smtp"
    with pytest.raises(ChannelConfigurationError, match="sms_broken.*vendor SDK missing"):
        registry.backend_class("sms_broken")
    with pytest.raises(ChannelConfigurationError, match="not a ChannelBackend"):
        registry.backend_class("sms_dict")


def test_unknown_backend():
    with pytest.raises(ChannelConfigurationError, match="'carrier_pigeon'"):
        registry.backend_class("carrier_pigeon")


def test_builtins_are_registered():
    names = dict(registry.backend_choices())
    assert {"smtp", "webhook", "inapp", "console", "anymail.postmark"} <= set(names)
    assert registry.default_backend_for("inapp").name == "inapp"
    assert registry.default_backend_for("email") is None  # e-mail always needs an account
