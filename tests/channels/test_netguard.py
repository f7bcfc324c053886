"""netguard.check_outbound_url: only http(s); loopback, private, link-local, reserved and
IPv4-mapped IPv6 addresses refused; the allowed-hosts list and the allow-private switch."""
import pytest
from django.test import override_settings

from channels_app.netguard import BlockedURLError, check_outbound_url


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://example.com/",
                                 "javascript:alert(1)", "//example.com/x"])
def test_only_http_and_https(url):
    with pytest.raises(BlockedURLError, match="Only http and https"):
        check_outbound_url(url, resolve=False)


def test_url_without_host():
    with pytest.raises(BlockedURLError, match="no host"):
        check_outbound_url("http:///path", resolve=False)


@pytest.mark.parametrize("url", ["http://example.com:99999/", "http://example.com:port/"])
def test_malformed_port_is_a_blocked_url_not_a_crash(url):
    with override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[]), pytest.raises(BlockedURLError, match="malformed"):
        check_outbound_url(url)


PRIVATE = [
    "http://127.0.0.1/", "http://127.8.9.10:8000/", "http://localhost/", "http://api.localhost/",
    "http://10.0.0.1/", "http://172.16.5.4/", "http://192.168.1.1/", "http://169.254.169.254/",
    "http://100.64.0.1/", "http://0.0.0.0/", "http://224.0.0.1/", "http://[::1]/", "http://[fe80::1]/",
    "http://[fc00::1]/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:10.0.0.1]/",
    "http://[::ffff:169.254.169.254]/",
]


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[], NOTIFYHUB_OUTBOUND_ALLOW_PRIVATE=False)
@pytest.mark.parametrize("url", PRIVATE)
def test_private_and_reserved_addresses_are_blocked(url):
    with pytest.raises(BlockedURLError, match="private or reserved"):
        check_outbound_url(url)


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[], NOTIFYHUB_OUTBOUND_ALLOW_PRIVATE=False)
@pytest.mark.parametrize("url", ["https://93.184.216.34/x", "https://[2606:4700:4700::1111]/",
                                 "http://[::ffff:8.8.8.8]/", "https://hooks.example.com/in"])
def test_public_addresses_pass(url):
    assert check_outbound_url(url, resolve=False) == url


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[])
def test_unresolvable_host_is_blocked_when_resolving():
    with pytest.raises(BlockedURLError, match="does not resolve"):
        check_outbound_url("https://no-such-host.invalid/")


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=["10.0.0.5", "Hooks.Internal.Example"])
def test_allowed_hosts_pass_and_others_stay_blocked():
    assert check_outbound_url("http://10.0.0.5:8080/hook") == "http://10.0.0.5:8080/hook"
    # host names are case-insensitive: the list entry matches the (lower-cased) URL host
    assert check_outbound_url("http://hooks.internal.example/in") == "http://hooks.internal.example/in"
    with pytest.raises(BlockedURLError):
        check_outbound_url("http://10.0.0.6/hook")


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[], NOTIFYHUB_OUTBOUND_ALLOW_PRIVATE=True)
def test_allow_private_lets_everything_through():
    for url in PRIVATE:
        assert check_outbound_url(url) == url


def test_scheme_is_checked_even_when_private_is_allowed():
    with override_settings(NOTIFYHUB_OUTBOUND_ALLOW_PRIVATE=True), pytest.raises(BlockedURLError):
        check_outbound_url("file:///etc/passwd")
