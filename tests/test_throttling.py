"""Throttles on Redis: per API key and scope, per client address, per wrong key; admin lockout."""
import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from notifyhub.api.throttling import parse_rate
from tests import factories

pytestmark = pytest.mark.django_db
URL = "/api/v1/messages"  # an operation of the read scope


@pytest.fixture
def rates(settings, redis_uid):
    """Tight limits for one test; counters live in the test Redis."""
    def set_rates(**overrides):
        settings.NOTIFYHUB_THROTTLE_RATES = {**django_settings.NOTIFYHUB_THROTTLE_RATES, **overrides}
    return set_rates


def client_for(key: str | None = None, address: str = "10.0.0.1") -> APIClient:
    client = APIClient(REMOTE_ADDR=address)
    if key:
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def assert_throttled(response):
    assert response.status_code == 429, response.content
    assert int(response["Retry-After"]) >= 1
    assert "throttled" in response.json()["detail"].lower() or "too many" in response.json()["detail"].lower()


def test_rate_format():
    assert parse_rate("600/min") == (600, 60)
    assert parse_rate("10/5s") == (10, 5)
    assert parse_rate("2/h") == (2, 3600)
    assert parse_rate("") is None


def test_each_key_is_limited_per_scope(rates):
    rates(read="3/min")
    _, first = factories.api_key(scopes=["read", "manage"])
    _, second = factories.api_key(scopes=["read"])
    client = client_for(first)
    assert [client.get(URL).status_code for _ in range(3)] == [200, 200, 200]
    assert_throttled(client.get(URL))
    assert client_for(second, address="10.0.0.2").get(URL).status_code == 200  # another key: its own count
    keys = redis.Redis.from_url(django_settings.REDIS_URL).keys("*throttle:key:*")
    assert keys, "the counter lives in the shared Redis, so every web process sees it"


def test_each_address_is_limited_whatever_the_key(rates):
    rates(address="4/min")
    keys = [factories.api_key(scopes=["read"])[1] for _ in range(3)]
    answers = [client_for(keys[i % 3]).get(URL).status_code for i in range(4)]
    assert answers == [200, 200, 200, 200]
    assert_throttled(client_for(keys[0]).get(URL))
    assert_throttled(client_for(None).get(URL))  # no key at all: still counted by address
    spoofed = client_for(keys[1])
    assert_throttled(spoofed.get(URL, HTTP_X_FORWARDED_FOR="10.9.9.9"))  # the header is not trusted
    assert client_for(keys[1], address="10.0.0.9").get(URL).status_code == 200


def test_forwarded_address_is_used_behind_a_trusted_proxy(rates, settings):
    rates(address="2/min")
    settings.NOTIFYHUB_TRUSTED_PROXIES = 1
    _, key = factories.api_key(scopes=["read"])
    proxy = client_for(key, address="10.1.1.1")
    for _ in range(2):
        assert proxy.get(URL, HTTP_X_FORWARDED_FOR="192.0.2.1").status_code == 200
    assert_throttled(proxy.get(URL, HTTP_X_FORWARDED_FOR="192.0.2.1"))
    assert proxy.get(URL, HTTP_X_FORWARDED_FOR="192.0.2.2").status_code == 200


def test_wrong_keys_lock_the_address_before_the_key_is_checked(rates):
    rates(auth_failure="3/min")
    _, good = factories.api_key(scopes=["read"])
    guesses = [client_for(f"guess-{i}").get(URL).status_code for i in range(3)]
    assert guesses == [401, 401, 401]
    assert_throttled(client_for("guess-4").get(URL))
    assert_throttled(client_for(good).get(URL))  # even a right key, from this address
    assert client_for(good, address="10.0.0.3").get(URL).status_code == 200


def test_default_rates_do_not_throttle_ordinary_use(api):
    assert all(api.get(URL).status_code == 200 for _ in range(50))


# --- admin login lockout --------------------------------------------------------------------------
def test_admin_login_locks_out_after_repeated_failures(client, redis_uid, settings):
    User.objects.create_superuser("boss", "boss@example.com", "right-password-123")
    login = "/admin/login/?next=/admin/"
    limit = settings.AXES_FAILURE_LIMIT
    for _ in range(limit - 1):
        response = client.post(login, {"username": "boss", "password": "wrong"}, REMOTE_ADDR="10.0.0.5")
        assert response.status_code == 200  # the form again, with an error
    assert client.post(login, {"username": "boss", "password": "wrong"}, REMOTE_ADDR="10.0.0.5").status_code == 429
    locked = client.post(login, {"username": "boss", "password": "right-password-123"}, REMOTE_ADDR="10.0.0.5")
    assert locked.status_code == 429  # the right password does not help while locked out
    assert redis.Redis.from_url(settings.REDIS_URL).keys("*axes*"), "lockouts are shared through Redis"
    other = client.post(login, {"username": "boss", "password": "right-password-123"}, REMOTE_ADDR="10.0.0.6")
    assert other.status_code == 302  # another address is not locked out


def test_admin_login_success_resets_the_count(client, redis_uid, settings):
    User.objects.create_superuser("boss", "boss@example.com", "right-password-123")
    login = "/admin/login/?next=/admin/"
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        client.post(login, {"username": "boss", "password": "wrong"}, REMOTE_ADDR="10.0.0.7")
    assert client.post(login, {"username": "boss", "password": "right-password-123"},
                       REMOTE_ADDR="10.0.0.7").status_code == 302
    client.logout()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert client.post(login, {"username": "boss", "password": "wrong"}, REMOTE_ADDR="10.0.0.7").status_code == 200
