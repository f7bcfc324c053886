"""Provider secrets at rest: encrypted in ChannelConfig, decryptable, rotatable with two keys,
unreadable with the wrong key (a configuration error), and masked to at most 4 characters."""
import pytest
from cryptography.fernet import Fernet
from django.test import override_settings

from channels_app import crypto
from channels_app.errors import ChannelConfigurationError
from channels_app.models import ChannelConfig
from tests import factories

SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY="


def new_key() -> str:
    return Fernet.generate_key().decode()


@pytest.mark.django_db
def test_secrets_are_encrypted_at_rest():
    config = factories.webhook_channel("http://127.0.0.1:9/hook", secret=SECRET)

    raw = ChannelConfig.objects.values_list("secrets_encrypted", "options").get(pk=config.pk)
    assert SECRET not in raw[0]
    assert "QUJDREVG" not in raw[0]
    assert "signing_secret" not in raw[1]
    assert ChannelConfig.objects.get(pk=config.pk).secrets == {"signing_secret": SECRET}


def test_round_trip():
    secrets = {"password": "hunter2-ünï", "esp_credentials": {"api_key": "k"}}
    token = crypto.encrypt_secrets(secrets)

    assert "hunter2" not in token
    assert crypto.decrypt_secrets(token) == secrets
    assert crypto.encrypt_secrets({}) == "" and crypto.decrypt_secrets("") == {}


def test_key_rotation():
    old, new = new_key(), new_key()
    with override_settings(NOTIFYHUB_SECRETS_KEYS=[old]):
        token = crypto.encrypt_secrets({"password": "p"})

    with override_settings(NOTIFYHUB_SECRETS_KEYS=[new, old]):
        assert crypto.decrypt_secrets(token) == {"password": "p"}  # old key still decrypts
        rotated = crypto.rotate(token)
        fresh = crypto.encrypt_secrets({"password": "q"})

    with override_settings(NOTIFYHUB_SECRETS_KEYS=[new]):  # the old key can now be dropped
        assert crypto.decrypt_secrets(rotated) == {"password": "p"}
        assert crypto.decrypt_secrets(fresh) == {"password": "q"}
        with pytest.raises(ChannelConfigurationError):
            crypto.decrypt_secrets(token)


def test_wrong_key_is_a_configuration_error():
    token = crypto.encrypt_secrets({"password": "p"})

    with override_settings(NOTIFYHUB_SECRETS_KEYS=[new_key()]), pytest.raises(ChannelConfigurationError):
        crypto.decrypt_secrets(token)


@pytest.mark.parametrize("value", ["a", "abcd", "abcdefghijk", "abcdefghijkl", "sk_live_0123456789ABCDEF", 12345678])
def test_mask_shows_at_most_the_last_four_characters(value):
    masked = crypto.mask(value)
    text = str(value)

    assert masked.startswith("•" * 8)
    shown = masked.removeprefix("•" * 8)
    assert len(shown) <= 4
    assert shown == "" or text.endswith(shown)
    if len(text) < 12:  # short secrets show nothing: 4 of 8 characters would be half the secret
        assert shown == ""


def test_mask_of_nothing_is_empty():
    assert crypto.mask("") == ""
