"""SMTP backend against a real aiosmtpd server.

Verified: a batch goes over one SMTP session; the received e-mail carries the rendered
subject, a text/plain and a text/html part, From, the X-Notifyhub-Delivery header and the
Message-ID the result reports; 550 on RCPT is permanent (and the batch goes on), 451 is
transient; a server that is down is a transient outcome per message, not an exception;
addresses are validated.
"""
import uuid

import pytest

from channels_app.backends.email import SmtpBackend
from channels_app.errors import InvalidAddressError, PermanentChannelError, TransientChannelError
from channels_app.message import OutboundMessage, SendResult
from tests.conftest import free_port


def backend(port: int, **options) -> SmtpBackend:
    return SmtpBackend(options=SmtpBackend.validate_options({
        "host": "127.0.0.1", "port": port, "security": "none", "from_email": "hub@example.com",
        "timeout": 5, **options}))


def message(address: str, n: int = 1) -> OutboundMessage:
    return OutboundMessage(
        delivery_id=str(uuid.uuid4()), kind="email", address=address,
        content={"subject": f"Your code {n} ✓", "text": f"Hi Ada, code {n}.",
                 "html": f"<p>Hi <b>Ada</b>, code {n}.</p>"},
    )


def test_batch_uses_one_session_and_delivers_the_rendered_email(smtp_peer):
    peer = smtp_peer()
    messages = [message(f"user{n}@example.com", n) for n in range(5)]

    with backend(peer.port, reply_to="help@example.com") as b:
        outcomes = list(b.send_many(messages))

    assert peer.sessions == 1
    assert [m for m, _ in outcomes] == messages
    assert all(isinstance(outcome, SendResult) for _, outcome in outcomes)
    received = peer.messages()
    assert [e.rcpt_tos for e in peer.envelopes] == [[m.address] for m in messages]
    for n, (email, (msg, result)) in enumerate(zip(received, outcomes, strict=True)):
        assert email["Subject"] == f"Your code {n} ✓"
        assert email["From"] == "hub@example.com"
        assert email["To"] == msg.address
        assert email["Reply-To"] == "help@example.com"
        assert email["X-Notifyhub-Delivery"] == msg.delivery_id
        assert email.get_body(("plain",)).get_content().strip() == f"Hi Ada, code {n}."
        assert email.get_body(("html",)).get_content().strip() == f"<p>Hi <b>Ada</b>, code {n}.</p>"
        assert email.get_content_type() == "multipart/alternative"
        # the result names the message the server accepted
        assert result.provider_message_id
        assert result.provider_message_id == email["Message-ID"]


def test_recipient_refused_550_is_permanent_and_the_batch_continues(smtp_peer):
    peer = smtp_peer(rcpt_replies={"gone": "550 5.1.1 No such user"})
    messages = [message("gone@example.com"), message("ok@example.com")]

    with backend(peer.port) as b:
        (_, refused), (_, sent) = list(b.send_many(messages))

    assert isinstance(refused, PermanentChannelError)
    assert not isinstance(refused, TransientChannelError)
    assert refused.status == 550
    assert "No such user" in refused.response
    assert isinstance(sent, SendResult)
    assert [e.rcpt_tos for e in peer.envelopes] == [["ok@example.com"]]
    assert peer.sessions == 1


def test_temporary_failure_451_is_transient(smtp_peer):
    peer = smtp_peer(rcpt_replies={"busy": "451 4.7.1 Greylisted, try again later"})

    with pytest.raises(TransientChannelError) as info, backend(peer.port) as b:
        b.send(message("busy@example.com"))

    assert info.value.status == 451
    assert "Greylisted" in info.value.response
    assert peer.envelopes == []


def test_server_down_is_a_transient_outcome_for_every_message():
    port = free_port()  # nothing listens here
    messages = [message(f"user{n}@example.com") for n in range(3)]

    with backend(port) as b:  # entering does not raise: the failure belongs to the messages
        outcomes = list(b.send_many(messages))

    assert [m for m, _ in outcomes] == messages
    for _, outcome in outcomes:
        assert isinstance(outcome, TransientChannelError)
        assert outcome.code == "smtp_connection"


def test_single_send_to_a_server_that_is_down_is_transient():
    with pytest.raises(TransientChannelError):
        backend(free_port()).send(message("user@example.com"))


def test_reconnects_after_the_server_comes_up(smtp_peer):
    """A failed connect is not remembered: the next send connects again."""
    port = free_port()
    b = backend(port)
    with pytest.raises(TransientChannelError):
        b.send(message("a@example.com"))
    peer = smtp_peer(port=port)
    try:
        assert isinstance(b.send(message("b@example.com")), SendResult)
    finally:
        b.close()
    assert [e.rcpt_tos for e in peer.envelopes] == [["b@example.com"]]


@pytest.mark.parametrize("address", ["not-an-address", "a@", "@example.com", "a b@example.com",
                                     "a@example.com\r\nBcc: victim@example.com", ""])
def test_invalid_address(address):
    with pytest.raises(InvalidAddressError):
        SmtpBackend.validate_address(address)


def test_valid_address_is_normalised():
    assert SmtpBackend.validate_address("  ada@example.com ") == "ada@example.com"
