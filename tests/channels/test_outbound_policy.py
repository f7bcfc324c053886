"""The outbound-URL policy under attack (issue 10, finding 1/2, acceptance 1).

Every hostile form below is refused when saved (a channel's ``options.url`` and a recipient's
webhook contact point answer 400 naming the field) and when sent (a real loopback listener
receives no connection). The policy is ON in this module: the test suite's loopback allow-list
(``NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=127.0.0.1,localhost``) is switched off, except where a
test says otherwise.
"""
import json
import logging
import socket
import threading
import uuid

import pytest
import urllib3
from django.test import override_settings
from werkzeug import Response

from channels_app.backends.apprise_chat import AppriseBackend, contacted_hosts, services
from channels_app.backends.email import SmtpBackend
from channels_app.backends.webhook import WebhookBackend, generate_secret
from channels_app.errors import PermanentChannelError, TransientChannelError
from channels_app.message import OutboundMessage, SendResult
from channels_app.netguard import BlockedURLError, address_refusal, check_outbound_url, resolve_checked
from channels_app.outbound import UnpinnedHostError, pinned_hosts
from tests import factories

POLICY_ON = override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[], NOTIFYHUB_OUTBOUND_ALLOW_PRIVATE=False)

#: ``{port}`` is the loopback listener's port.
HOSTILE = [
    # the backslash confusion of finding 1, and its relatives
    "http://127.0.0.1:{port}\\@1.2.3.4/pwned", "http://localhost:{port}\\@1.2.3.4/", "http://127.0.0.1:{port}\\\\@example.com/",
    "http://1.2.3.4\\@127.0.0.1:{port}/", "http://127.0.0.1:{port}\\.example.com/", "https://127.0.0.1:{port}\\@8.8.8.8/",
    # userinfo and @ in odd places
    "http://user@127.0.0.1:{port}/", "http://user:pw@127.0.0.1:{port}/", "http://8.8.8.8@127.0.0.1:{port}/",
    "http://example.com@127.0.0.1:{port}/", "http://@127.0.0.1:{port}/", "http://a@b@127.0.0.1:{port}/",
    "http://127.0.0.1:{port}@8.8.8.8/", "http://:@127.0.0.1:{port}/",
    # whitespace and control characters
    "http://127.0.0.1:{port} /", "http:// 127.0.0.1:{port}/", "http://127.0.0.1:{port}/\r\nX: y", "http://127.0.0.1\t:{port}/",
    "http://127.0.0.1:{port}/\x00", "http://127.0.0.1%00.example.com:{port}/", "\thttp://127.0.0.1:{port}/",
    "http://127.0.0.1:{port}\n/", "http://example.com\x7f@127.0.0.1:{port}/",
    # non-canonical IPv4 forms getaddrinfo reads as 127.0.0.1
    "http://0x7f.1:{port}/", "http://0x7f000001:{port}/", "http://2130706433:{port}/", "http://017700000001:{port}/",
    "http://127.1:{port}/", "http://127.0.1:{port}/", "http://0177.0.0.1:{port}/", "http://0x7f.0.0.1:{port}/",
    "http://127.000.000.001:{port}/", "http://0:{port}/", "http://0x0:{port}/", "http://127.0.0.01:{port}/",
    "http://1.0.0.127.in-addr.arpa.:{port}/", "http://localhost.:{port}/",
    # literal private, reserved and special addresses
    "http://127.0.0.1:{port}/", "http://127.255.255.254:{port}/", "http://0.0.0.0:{port}/", "http://10.0.0.1:{port}/",
    "http://172.16.0.1:{port}/", "http://192.168.0.1:{port}/", "http://169.254.169.254:{port}/latest/meta-data",
    "http://100.64.0.1:{port}/", "http://100.127.255.254:{port}/", "http://224.0.0.1:{port}/",
    "http://240.0.0.1:{port}/", "http://255.255.255.255:{port}/", "http://192.0.0.8:{port}/", "http://198.18.0.1:{port}/",
    "http://localhost:{port}/", "http://api.localhost:{port}/",
    # IPv6, and IPv6 forms wrapping a private IPv4 address
    "http://[::1]:{port}/", "http://[::]:{port}/", "http://[::ffff:127.0.0.1]:{port}/", "http://[::ffff:7f00:1]:{port}/",
    "http://[::127.0.0.1]:{port}/", "http://[::7f00:1]:{port}/", "http://[64:ff9b::127.0.0.1]:{port}/",
    "http://[64:ff9b::a00:1]:{port}/", "http://[64:ff9b:1::1]:{port}/", "http://[2002:7f00:1::]:{port}/",
    "http://[2002:a9fe:a9fe::1]:{port}/", "http://[fe80::1]:{port}/", "http://[fe80::1%25lo]:{port}/",
    "http://[fc00::1]:{port}/", "http://[fd12:3456::1]:{port}/", "http://[fec0::1]:{port}/", "http://[ff02::1]:{port}/",
    "http://[2001::1]:{port}/", "http://[2001:db8::1]:{port}/", "http://[::ffff:169.254.169.254]:{port}/",
    "http://[::ffff:100.64.0.1]:{port}/",
    # schemes, ports, broken authorities
    "ftp://127.0.0.1:{port}/", "file:///etc/passwd", "gopher://127.0.0.1:{port}/", "//127.0.0.1:{port}/",
    "http:/127.0.0.1:{port}/", "http://127.0.0.1:{port}:80/", "http://127.0.0.1:+{port}/", "http://[127.0.0.1]:{port}/",
    "http://127.0.0.1:{port}#@8.8.8.8/", "http://127.0.0.1:{port}?@8.8.8.8/", "http://exa_mple..com:{port}/",
    "http://ｌｏｃａｌｈｏｓｔ:{port}/", "http://127。0。0。1:{port}/",
]


@pytest.fixture
def listener():
    """A real loopback TCP listener that counts the connections it accepts."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.1)
    state = {"connections": 0, "stop": False}

    def accept():
        while not state["stop"]:
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            state["connections"] += 1
            conn.close()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    state["port"] = server.getsockname()[1]
    yield state
    state["stop"] = True
    thread.join(2)
    server.close()


def test_the_table_is_large_and_distinct():
    assert len(set(HOSTILE)) == len(HOSTILE) >= 60


@POLICY_ON
@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_url_is_refused_at_send_and_nothing_connects(template, listener):
    url = template.format(port=listener["port"])
    backend = WebhookBackend(options=WebhookBackend.validate_options({"signing_secret": generate_secret()}))
    message = OutboundMessage(delivery_id=str(uuid.uuid4()), kind="webhook", address=url,
                              content={"payload": {}}, metadata={})
    with backend:
        ((_, outcome),) = list(backend.send_many([message]))
    assert isinstance(outcome, PermanentChannelError), outcome
    assert outcome.code in ("blocked_url", "invalid_url"), outcome.detail
    assert listener["connections"] == 0


@POLICY_ON
@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_url_is_refused_by_the_policy(template):
    with pytest.raises(BlockedURLError):
        check_outbound_url(template.format(port=8899), resolve=False)


@pytest.mark.django_db
@POLICY_ON
@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_url_is_refused_on_save_as_channel_option(api, template):
    response = api.post("/api/v1/channels", data=json.dumps({
        "name": "hook", "kind": "webhook", "backend": "webhook",
        "options": {"url": template.format(port=8899)}, "secrets": {"signing_secret": generate_secret()},
    }), content_type="application/json")
    assert response.status_code == 400, response.content
    assert "url" in response.json().get("options", {}), response.json()


@pytest.mark.django_db
@POLICY_ON
@pytest.mark.parametrize("app", ["", "webhook", "some-account"])
@pytest.mark.parametrize("template", HOSTILE)
def test_hostile_url_is_refused_on_save_as_contact_point(api, template, app):
    person = factories.recipient(email=None)
    response = api.post(f"/api/v1/recipients/{person.external_id}/contact-points", data=json.dumps(
        {"kind": "webhook", "app": app, "address": template.format(port=8899)}), content_type="application/json")
    assert response.status_code == 400, response.content
    assert "address" in response.json(), response.json()


# --- addresses ---------------------------------------------------------------------------------
@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34",
                                     "64:ff9b::5db8:d822", "2002:5db8:d822::1"])
def test_public_addresses_pass(address):
    assert address_refusal(address) is None


# --- DNS rebinding -----------------------------------------------------------------------------
class RebindingResolver:
    """A DNS server that answers each question from its list in turn, then repeats the last."""

    def __init__(self, *answers: list[str]):
        self.answers, self.calls = list(answers), 0

    def __call__(self, host: str, port: int) -> list[str]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return answer


@POLICY_ON
def test_rebinding_is_resolved_once_and_every_answer_checked(listener):
    resolver = RebindingResolver(["127.0.0.1"], ["93.184.216.34"])
    backend = WebhookBackend(options=WebhookBackend.validate_options({"signing_secret": generate_secret()}),
                             resolver=resolver)
    message = OutboundMessage(delivery_id="d1", kind="webhook", address=f"http://rebind.test:{listener['port']}/",
                              content={"payload": {}}, metadata={})
    with backend:
        ((_, outcome),) = list(backend.send_many([message]))
    assert isinstance(outcome, PermanentChannelError) and outcome.code == "blocked_url"
    assert resolver.calls == 1 and listener["connections"] == 0
    # a public answer followed by a private one: the one checked answer is what is used
    resolver = RebindingResolver(["93.184.216.34"], ["127.0.0.1"])
    assert resolve_checked("rebind.test", 80, resolver=resolver) == ["93.184.216.34"]
    assert resolver.calls == 1
    with pytest.raises(BlockedURLError):  # one private address among public ones is enough
        resolve_checked("mixed.test", 80, resolver=RebindingResolver(["93.184.216.34", "10.0.0.1"]))


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=["rebind.test"], NOTIFYHUB_OUTBOUND_ALLOW_PRIVATE=False)
def test_connection_goes_to_the_first_answer_with_the_host_name_kept(httpserver):
    """Pinning shown with an allow-listed name (so loopback answers are accepted): the
    request reaches the address of the first answer, with ``Host: rebind.test``, although
    every later answer points elsewhere."""
    seen = []

    def handler(request):
        seen.append(request.headers["Host"])
        return Response("", status=204)

    httpserver.expect_request("/hook").respond_with_handler(handler)
    resolver = RebindingResolver(["127.0.0.1"], ["127.0.0.2"])
    backend = WebhookBackend(options=WebhookBackend.validate_options({"signing_secret": generate_secret()}),
                             resolver=resolver)
    message = OutboundMessage(delivery_id="d1", kind="webhook", address=f"http://rebind.test:{httpserver.port}/hook",
                              content={"payload": {}}, metadata={})
    with backend:
        ((_, outcome),) = list(backend.send_many([message]))
    assert isinstance(outcome, SendResult), outcome
    assert seen == [f"rebind.test:{httpserver.port}"]
    assert resolver.calls == 1


# --- Apprise -----------------------------------------------------------------------------------
APPRISE_HOSTILE = [
    "zulip://bot@127.0.0.1/abcdefghijklmnopqrstuvwxyz123456", "zulip://bot@10.0.0.1/abcdefghijklmnopqrstuvwxyz123456",
    "json://127.0.0.1:8899/", "json://user:pw@169.254.169.254/", "jsons://[::ffff:127.0.0.1]/", "xml://0x7f.1/",
    "form://2130706433/", "ntfy://127.0.0.1/topic", "gotify://10.1.2.3/token", "mailto://user:pw@127.0.0.1",
    "acs://me@example.com/c2VjcmV0a2V5c2VjcmV0a2V5/internal.corp.local",
]


@POLICY_ON
@pytest.mark.parametrize("url", APPRISE_HOSTILE)
def test_apprise_targets_are_checked_on_save_and_send(url):
    with pytest.raises((ValueError, BlockedURLError)):
        services(url, resolve=False) if not url.startswith("acs://") else services(url, resolve=True)
    backend = AppriseBackend(options={"urls": url, "timeout": 1})
    message = OutboundMessage(delivery_id="d1", kind="chat", address="", content={"text": "hi"}, metadata={})
    ((_, outcome),) = list(backend.send_many([message]))
    assert isinstance(outcome, (PermanentChannelError, TransientChannelError))
    assert outcome.code in ("blocked_url", "invalid_url", "dns_failure"), outcome.detail


@POLICY_ON
@pytest.mark.parametrize("url", ["tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/12345",
                                 "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js",
                                 "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
                                 "zulip://bot@apprise.zulipchat.com/abcdefghijklmnopqrstuvwxyz123456"])
def test_apprise_fixed_provider_hosts_save(url):
    assert len(services(url, resolve=False)) == 1


@pytest.mark.parametrize(("url", "hosts"), [
    ("tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/12345", ["api.telegram.org"]),
    ("ntfy://alerts", ["ntfy.sh"]),
    ("ntfys://ntfy.example.com/alerts", ["ntfy.example.com"]),
    ("zulip://bot@apprise.zulipchat.com/abcdefghijklmnopqrstuvwxyz123456", ["apprise.zulipchat.com"]),
    ("jsons://[2606:4700::1111]/x", ["2606:4700::1111"]),
])
def test_apprise_pins_named_and_fixed_provider_hosts(url, hosts):
    """Every host a plugin contacts is resolved, checked and pinned at send, fixed ones too."""
    assert contacted_hosts(services(url, resolve=False)[0]) == hosts


def test_apprise_logs_no_token(caplog):
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(ValueError):
            services("bogus://TOKENSECRET1234/", resolve=False)
        assert not AppriseBackend.Options(data={"urls": "json://user:P4SSW0RD@[bad/"}).is_valid()
    assert "TOKENSECRET1234" not in caplog.text and "P4SSW0RD" not in caplog.text
    assert "bogus://" in caplog.text  # the record is kept, the URL masked


class RebindingDNS:
    """The machine's DNS (``socket.getaddrinfo``) answering for ``rebind.test`` from ``resolver``,
    and a guard on ``socket.connect`` that records every address connected to and lets only
    loopback through, so nothing leaves the machine."""

    def __init__(self, monkeypatch, resolver):
        self.connects: list[tuple[str, int]] = []
        getaddrinfo, connect = socket.getaddrinfo, socket.socket.connect

        def fake_getaddrinfo(host, port, *args, **kwargs):
            if host != "rebind.test":
                return getaddrinfo(host, port, *args, **kwargs)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in resolver(host, port)]

        def guarded_connect(sock, address):
            self.connects.append(address[:2])
            if not address[0].startswith("127."):
                raise ConnectionRefusedError(f"test: no traffic to {address[0]}")
            return connect(sock, address)

        monkeypatch.setattr(socket, "getaddrinfo", fake_getaddrinfo)
        monkeypatch.setattr(socket.socket, "connect", guarded_connect)


@POLICY_ON
def test_apprise_connects_only_to_the_checked_address(listener, monkeypatch):
    """A rebinding DNS server answers a public address to the check and 127.0.0.1 afterwards:
    Apprise's request goes to the checked address (refused here, as it is not loopback), the
    name is resolved once, and the loopback listener is never reached."""
    resolver = RebindingResolver(["93.184.216.34"], ["127.0.0.1"])
    dns = RebindingDNS(monkeypatch, resolver)
    url = f"form://rebind.test:{listener['port']}/hook"
    backend = AppriseBackend(options=AppriseBackend.validate_options({"urls": url, "timeout": 5}), resolver=resolver)
    message = OutboundMessage(delivery_id="d1", kind="chat", address="", content={"text": "hi"}, metadata={})
    ((_, outcome),) = list(backend.send_many([message]))
    assert isinstance(outcome, TransientChannelError) and outcome.code == "apprise_failed", outcome
    assert dns.connects == [("93.184.216.34", listener["port"])]
    assert resolver.calls == 1 and listener["connections"] == 0


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=["rebind.test"], NOTIFYHUB_OUTBOUND_ALLOW_PRIVATE=False)
def test_apprise_is_pinned_with_the_host_name_kept_and_redirects_not_followed(httpserver, listener, monkeypatch):
    """An allow-listed name (so a loopback answer is accepted): Apprise's POST reaches the first
    answer with ``Host: rebind.test``; a redirect to another (loopback) server is not followed."""
    seen = []

    def handler(request):
        seen.append((request.path, request.headers["Host"]))
        if request.path == "/moved":
            return Response("", status=302, headers={"Location": f"http://127.0.0.1:{listener['port']}/"})
        return Response("", status=200)

    httpserver.expect_request("/hook").respond_with_handler(handler)
    httpserver.expect_request("/moved").respond_with_handler(handler)
    resolver = RebindingResolver(["127.0.0.1"], ["127.0.0.1"], ["127.0.0.2"])  # one check per send, then rebinds
    dns = RebindingDNS(monkeypatch, resolver)
    message = OutboundMessage(delivery_id="d1", kind="chat", address="", content={"text": "hi"}, metadata={})
    for path in ("/hook", "/moved?redirect=yes"):
        url = f"json://rebind.test:{httpserver.port}{path}"
        backend = AppriseBackend(options=AppriseBackend.validate_options({"urls": url, "timeout": 5}),
                                 resolver=resolver)
        ((_, outcome),) = list(backend.send_many([message]))
        assert isinstance(outcome, SendResult if path == "/hook" else TransientChannelError), outcome
    assert seen == [("/hook", f"rebind.test:{httpserver.port}"), ("/moved", f"rebind.test:{httpserver.port}")]
    assert resolver.calls == 2
    assert set(dns.connects) == {("127.0.0.1", httpserver.port)} and listener["connections"] == 0


def test_pinned_hosts_refuses_other_hosts_and_ends_with_its_block(listener):
    url = f"http://127.0.0.1:{listener['port']}/"
    with pinned_hosts({"elsewhere.test": "127.0.0.1"}), pytest.raises(urllib3.exceptions.NewConnectionError,
                                                                      match="not checked"):
        urllib3.PoolManager(retries=False).request("GET", url)
    assert listener["connections"] == 0
    with pytest.raises(urllib3.exceptions.ProtocolError):  # outside: connects as before (the listener hangs up)
        urllib3.PoolManager(retries=False).request("GET", url)
    assert listener["connections"] == 1
    assert issubclass(UnpinnedHostError, OSError)


# --- finding 11 ----------------------------------------------------------------------------------
def test_crlf_subject_fails_permanently_at_once(smtp_peer):
    peer = smtp_peer()
    backend = SmtpBackend(options=SmtpBackend.validate_options({
        "host": "127.0.0.1", "port": peer.port, "security": "none", "from_email": "hub@example.com"}))
    message = OutboundMessage(delivery_id="d1", kind="email", address="ada@example.com",
                              content={"subject": "Hello\r\nBcc: victim@example.com", "text": "hi"}, metadata={})
    with backend:
        ((_, outcome),) = list(backend.send_many([message]))
    assert isinstance(outcome, PermanentChannelError) and outcome.code == "bad_header"
    assert peer.envelopes == []


class LeakyBackend(WebhookBackend):
    name = "test_leaky"

    def send(self, message):
        raise RuntimeError(f"cannot post to {message.address}")


def test_backend_logs_carry_no_credentials(caplog, httpserver):
    """urllib3's request lines and the harness's traceback of an unexpected error are masked."""
    httpserver.expect_request("/robot/send").respond_with_data("{}")
    secret = {"signing_secret": generate_secret()}
    address = httpserver.url_for("/robot/send") + "?access_token=T0KEN5ECRET"
    leaky_address = "https://bot:PA55W0RD@hooks.example.com/x?key=K3YSECRET"
    message = OutboundMessage(delivery_id="d1", kind="webhook", address=address, content={"payload": {}}, metadata={})
    with caplog.at_level(logging.DEBUG):
        with WebhookBackend(options=WebhookBackend.validate_options(secret)) as backend:
            ((_, sent),) = list(backend.send_many([message]))
        with LeakyBackend(options=WebhookBackend.validate_options(secret)) as backend:
            ((_, failed),) = list(backend.send_many([message.__class__(
                delivery_id="d2", kind="webhook", address=leaky_address, content={}, metadata={})]))
    assert isinstance(sent, SendResult) and failed.code == "backend_error"
    # what notifyhub's side logged (the test peer's own access log, werkzeug, is not ours)
    logged = "\n".join(f"{r.getMessage()}\n{r.exc_text or ''}" for r in caplog.records if r.name != "werkzeug")
    assert "/robot/send?***" in logged  # urllib3's DEBUG request line, masked
    assert "RuntimeError" in logged and "https://***@hooks.example.com/x?***" in logged
    for secret_text in ("T0KEN5ECRET", "PA55W0RD", "K3YSECRET"):
        assert secret_text not in logged
