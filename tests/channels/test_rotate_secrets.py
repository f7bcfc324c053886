"""``manage.py rotate_secrets`` moves every stored secret to the newest key, so the old key can go."""
import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from channels_app.errors import ChannelConfigurationError
from channels_app.models import ChannelConfig
from tests import factories

pytestmark = pytest.mark.django_db


def test_rotation_lets_the_old_key_go(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.NOTIFYHUB_SECRETS_KEYS = [old]
    hooks = [factories.webhook_channel("https://hooks.example.com/a") for _ in range(3)]
    inbox = factories.inapp_channel()  # no secrets: nothing to do
    before = {c.pk: c.secrets for c in hooks}

    settings.NOTIFYHUB_SECRETS_KEYS = [new, old]
    with pytest.raises(CommandError, match="3 account"):
        call_command("rotate_secrets", "--check")
    call_command("rotate_secrets")
    call_command("rotate_secrets", "--check")

    settings.NOTIFYHUB_SECRETS_KEYS = [new]  # the old key is gone
    after = {c.pk: c.secrets for c in ChannelConfig.objects.filter(pk__in=before)}
    assert after == before
    assert ChannelConfig.objects.get(pk=inbox.pk).secrets_encrypted == ""


def test_without_rotation_dropping_the_old_key_breaks_the_secrets(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.NOTIFYHUB_SECRETS_KEYS = [old]
    config = factories.webhook_channel("https://hooks.example.com/a")
    settings.NOTIFYHUB_SECRETS_KEYS = [new]
    with pytest.raises(ChannelConfigurationError):
        ChannelConfig.objects.get(pk=config.pk).secrets  # noqa: B018


def test_an_unreadable_secret_is_named_and_fails_the_command(settings, capsys):
    stranger = Fernet.generate_key().decode()
    settings.NOTIFYHUB_SECRETS_KEYS = [stranger]
    config = factories.webhook_channel("https://hooks.example.com/a")
    settings.NOTIFYHUB_SECRETS_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(CommandError):
        call_command("rotate_secrets")
    assert config.name in capsys.readouterr().err
