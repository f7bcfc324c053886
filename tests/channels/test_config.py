"""ChannelConfig validation and the services that save and test provider accounts: errors name
the field; a secret typed among the options is moved to the encrypted secrets; blank secrets
keep the stored value; a test send really reaches the SMTP server."""
import pytest
from django.core.exceptions import ValidationError

from channels_app.errors import TransientChannelError
from channels_app.models import ChannelConfig
from channels_app.services import channel_backend_build, channel_config_save, channel_test_send
from tests import factories
from tests.channels.conftest import new_webhook_secret
from tests.conftest import free_port

pytestmark = pytest.mark.django_db


def test_missing_option_is_named():
    config = ChannelConfig(name="mail", kind="email", backend="smtp", options={"from_email": "hub@example.com"})

    with pytest.raises(ValidationError) as info:
        channel_config_save(config=config)

    assert "host" in " ".join(info.value.message_dict["options"])
    assert not ChannelConfig.objects.exists()


def test_bad_option_value_is_named():
    config = ChannelConfig(name="mail", kind="email", backend="smtp",
                           options={"host": "h", "port": 70000, "from_email": "not-an-email"})

    with pytest.raises(ValidationError) as info:
        config.validated_options()

    text = " ".join(info.value.message_dict["options"])
    assert "port:" in text and "from_email:" in text


def test_backend_of_another_kind_is_refused():
    config = ChannelConfig(name="mail", kind="sms", backend="smtp", options={})

    with pytest.raises(ValidationError) as info:
        channel_config_save(config=config)

    assert "email backend, not sms" in info.value.message_dict["backend"][0]


def test_unknown_backend_is_refused():
    with pytest.raises(ValidationError) as info:
        ChannelConfig(name="x", kind="sms", backend="carrier_pigeon").validated_options()

    assert "carrier_pigeon" in info.value.message_dict["backend"][0]


def test_secret_typed_among_the_options_is_encrypted():
    secret = new_webhook_secret()
    config = ChannelConfig(name="hooks", kind="webhook", backend="webhook",
                           options={"url": "http://127.0.0.1:9/hook", "signing_secret": secret})

    channel_config_save(config=config)

    stored = ChannelConfig.objects.get(pk=config.pk)
    assert stored.options == {"url": "http://127.0.0.1:9/hook"}
    assert secret not in stored.secrets_encrypted
    assert stored.secrets == {"signing_secret": secret}
    assert stored.validated_options()["signing_secret"] == secret


def test_blank_secret_keeps_the_stored_one():
    first, second = new_webhook_secret(), new_webhook_secret()
    config = factories.webhook_channel("http://127.0.0.1:9/hook", secret=first)

    channel_config_save(config=config, secrets={"signing_secret": ""})
    assert ChannelConfig.objects.get(pk=config.pk).secrets == {"signing_secret": first}

    channel_config_save(config=config, secrets={"signing_secret": second})
    assert ChannelConfig.objects.get(pk=config.pk).secrets == {"signing_secret": second}


def test_backend_is_built_with_options_and_secrets():
    secret = new_webhook_secret()
    config = factories.webhook_channel("http://127.0.0.1:9/hook", secret=secret)

    backend = channel_backend_build(kind="webhook", config=config)

    assert backend.account == config.name
    assert backend.options == {"url": "http://127.0.0.1:9/hook", "signing_secret": secret, "timeout": 5.0}


def test_channel_test_send_reaches_the_smtp_server(smtp_server):
    config = factories.smtp_channel(smtp_server.port)

    result = channel_test_send(config=config, address=" ops@example.com ")

    (email,) = smtp_server.messages
    assert email["Subject"] == "notifyhub test message"
    assert email["To"] == "ops@example.com"
    assert email["From"] == "hub@example.com"
    assert result.provider_message_id == email["Message-ID"]


def test_channel_test_send_to_a_server_that_is_down_is_a_channel_error():
    config = factories.smtp_channel(free_port())

    with pytest.raises(TransientChannelError):
        channel_test_send(config=config, address="ops@example.com")
