"""``NOTIFYHUB_CA_BUNDLE`` (issue 10, acceptance 5): a company CA, generated here with trustme,
is trusted by every HTTPS client the backends use — the ``requests`` sessions of the HTTP
backends and the httpx HTTP/2 client of APNs — and without it the same server is refused.

The webhook test also shows that a pinned connection keeps the host name: the request goes to
the address the policy resolved, with TLS SNI and certificate verification for the name.
"""
import http.server
import ssl
import threading
import uuid

import pytest
import trustme
from django.test import override_settings

from channels_app.backends.apns import ApnsBackend
from channels_app.backends.webhook import WebhookBackend, generate_secret
from channels_app.errors import TransientChannelError
from channels_app.message import OutboundMessage, SendResult
from tests.channels.push_peers import ApnsAccount, ApnsPeer

HOST = "hooks.example.test"


@pytest.fixture
def company_ca(tmp_path):
    """A private CA, its bundle file, and a server certificate for HOST and localhost."""
    ca = trustme.CA()
    server_cert = ca.issue_cert(HOST, "localhost")
    bundle = tmp_path / "company-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    server_cert.cert_chain_pems[0].write_to_path(str(cert))
    server_cert.private_key_pem.write_to_path(str(key))
    return {"bundle": str(bundle), "cert": str(cert), "key": str(key)}


@pytest.fixture
def tls_server(company_ca):
    """An HTTPS server on 127.0.0.1 recording the SNI name and Host header of each request."""
    seen = {"sni": [], "host": []}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen["host"].append(self.headers["Host"])
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(company_ca["cert"], company_ca["key"])
    context.sni_callback = lambda sock, name, ctx: seen["sni"].append(name)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    seen["port"] = server.server_address[1]
    yield seen
    server.shutdown()
    server.server_close()


def to_loopback(host, port):
    return ["127.0.0.1"]


def send_webhook(port: int):
    backend = WebhookBackend(options=WebhookBackend.validate_options({"signing_secret": generate_secret()}),
                             resolver=to_loopback)
    message = OutboundMessage(delivery_id=str(uuid.uuid4()), kind="webhook", address=f"https://{HOST}:{port}/hook",
                              content={"payload": {}}, metadata={})
    with backend:
        ((_, outcome),) = list(backend.send_many([message]))
    return outcome


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=[HOST])
def test_requests_backends_trust_the_bundle_and_verify_the_host_name(tls_server, company_ca):
    refused = send_webhook(tls_server["port"])
    assert isinstance(refused, TransientChannelError) and "CERTIFICATE_VERIFY_FAILED" in refused.detail

    with override_settings(NOTIFYHUB_CA_BUNDLE=company_ca["bundle"]):
        outcome = send_webhook(tls_server["port"])

    assert isinstance(outcome, SendResult), outcome
    assert tls_server["sni"][-1] == HOST  # pinned to 127.0.0.1, yet TLS is for the name
    assert tls_server["host"] == [f"{HOST}:{tls_server['port']}"]


@override_settings(NOTIFYHUB_OUTBOUND_ALLOWED_HOSTS=["localhost"])
def test_httpx_apns_client_trusts_the_bundle(company_ca):
    account = ApnsAccount()
    peer = ApnsPeer(account, tls=(company_ca["cert"], company_ca["key"]))
    try:
        options = ApnsBackend.validate_options({
            "team_id": account.team_id, "key_id": account.key_id, "private_key": account.p8(),
            "bundle_id": account.bundle_id, "api_base": peer.url})
        message = OutboundMessage(delivery_id=str(uuid.uuid4()), kind="push", address="a3f1" * 16,
                                  content={"title": "t", "body": "b"})

        with ApnsBackend(options=options) as backend:
            ((_, refused),) = list(backend.send_many([message]))
        with override_settings(NOTIFYHUB_CA_BUNDLE=company_ca["bundle"]), ApnsBackend(options=options) as backend:
            ((_, outcome),) = list(backend.send_many([message]))
    finally:
        peer.stop()

    assert isinstance(refused, TransientChannelError) and "CERTIFICATE_VERIFY_FAILED" in refused.detail
    assert isinstance(outcome, SendResult), outcome
    assert len(peer.requests) == 1
