"""Peers for the channel tests: an aiosmtpd server that can refuse recipients, a threaded
pytest-httpserver, and a Standard Webhooks receiver written from the specification."""
import base64
import hashlib
import hmac
import os
import threading
import time

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from tests.conftest import free_port


# --- SMTP -------------------------------------------------------------------------------------
class SmtpPeer:
    """A real SMTP server that counts sessions and answers RCPT per local part.

    ``rcpt_replies`` maps a local part (``refused`` in ``refused@example.com``) to the reply
    the server gives for that recipient, e.g. ``"550 5.1.1 No such user"``.
    """

    def __init__(self, rcpt_replies: dict[str, str] | None = None, port: int | None = None):
        from aiosmtpd.controller import Controller

        self.rcpt_replies = dict(rcpt_replies or {})
        self.sessions = 0
        self.envelopes: list = []
        self.lock = threading.Lock()
        peer = self

        class Handler:
            async def handle_EHLO(self, server, session, envelope, hostname, responses):
                session.host_name = hostname
                with peer.lock:
                    peer.sessions += 1
                return responses

            async def handle_HELO(self, server, session, envelope, hostname):
                session.host_name = hostname
                with peer.lock:
                    peer.sessions += 1
                return "250 smtp.test"

            async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
                reply = peer.rcpt_replies.get(address.partition("@")[0])
                if reply:
                    return reply
                envelope.rcpt_tos.append(address)
                return "250 OK"

            async def handle_DATA(self, server, session, envelope):
                with peer.lock:
                    peer.envelopes.append(envelope)
                return "250 OK queued"

        self.port = port or free_port()
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def messages(self):
        import email
        from email import policy

        return [email.message_from_bytes(e.content, policy=policy.default) for e in self.envelopes]

    def stop(self):
        self.controller.stop()


@pytest.fixture
def smtp_peer():
    """A factory: ``smtp_peer(rcpt_replies={...})`` starts a server, stopped after the test."""
    started = []

    def start(**kwargs) -> SmtpPeer:
        peer = SmtpPeer(**kwargs)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.stop()


# --- HTTP -------------------------------------------------------------------------------------
@pytest.fixture
def threaded_httpserver():
    """A pytest-httpserver that serves requests in parallel threads."""
    server = HTTPServer(host="127.0.0.1", port=free_port(), threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


def new_webhook_secret() -> str:
    """A ``whsec_`` secret made here, not by the product code."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def standard_webhooks_verify(request: Request, secret: str, tolerance: int = 300) -> str:
    """Verify a request as a Standard Webhooks receiver does; return "" or what is wrong.

    Spec: the signed content is ``{webhook-id}.{webhook-timestamp}.{raw body}``, HMAC-SHA256
    keyed with the base64 part of the secret after ``whsec_``; ``webhook-signature`` is a
    space-separated list of ``v1,<base64 signature>``.
    """
    webhook_id = request.headers.get("webhook-id")
    timestamp = request.headers.get("webhook-timestamp")
    signatures = request.headers.get("webhook-signature")
    if not (webhook_id and timestamp and signatures):
        return "missing webhook-id, webhook-timestamp or webhook-signature"
    if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > tolerance:
        return f"timestamp {timestamp!r} outside tolerance"
    key = base64.b64decode(secret[len("whsec_"):])
    signed = f"{webhook_id}.{timestamp}.".encode() + request.get_data()
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in signatures.split(" "):
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value, expected):
            return ""
    return "no valid v1 signature"


def webhook_receiver(secret: str, received: list, status: int = 204):
    """A handler that answers 401 to a bad signature (as a real receiver) and records the rest."""

    def handle(request: Request) -> Response:
        problem = standard_webhooks_verify(request, secret)
        if problem:
            return Response(problem, status=401)
        received.append(request)
        return Response(status=status)

    return handle
