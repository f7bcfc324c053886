"""E-mail over SMTP, through Django's own SMTP connection (one connection per batch)."""
import smtplib
from collections.abc import Iterable, Iterator
from email.utils import make_msgid

from django.core import mail
from django.core.exceptions import ValidationError
from django.core.mail.utils import DNS_NAME
from django.core.validators import validate_email
from rest_framework import serializers

from channels_app.base import ChannelBackend, Outcome
from channels_app.errors import InvalidAddressError, PermanentChannelError, TransientChannelError
from channels_app.kinds import ChannelKind
from channels_app.message import OutboundMessage, SendResult


class EmailChannelBackend(ChannelBackend):
    """Turns an ``OutboundMessage`` into a Django e-mail and sends it over ``self.connection``."""

    kind = ChannelKind.EMAIL

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.connection = None

    @classmethod
    def validate_address(cls, address: str) -> str:
        address = (address or "").strip()
        try:
            validate_email(address)
        except ValidationError:
            raise InvalidAddressError(f"{address!r} is not a valid e-mail address.", code="invalid_email") from None
        return address

    def get_connection(self):
        raise NotImplementedError

    def __enter__(self):
        # Connect lazily on the first send: a server that is down then becomes each message's
        # (transient) outcome instead of an exception escaping the caller's ``with`` block.
        return self

    def open(self) -> None:
        """Connect (once); raise ``TransientChannelError`` when the server cannot be reached."""
        if self.connection is None:
            connection = self.get_connection()
            try:
                connection.open()
            except smtplib.SMTPResponseException as exc:
                raise _smtp_error(exc.smtp_code, exc.smtp_error) from exc
            except (smtplib.SMTPException, OSError) as exc:
                raise TransientChannelError(f"SMTP connection failed: {exc}", code="smtp_connection") from exc
            self.connection = connection

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            finally:
                self.connection = None

    def build(self, message: OutboundMessage) -> mail.EmailMultiAlternatives:
        content = message.content
        subject = str(content.get("subject", ""))
        if "\r" in subject or "\n" in subject:
            # Django refuses it (BadHeaderError) on every attempt: fail now, do not retry.
            raise PermanentChannelError("The subject contains a line break (CR/LF), which no e-mail "
                                        "header may carry.", code="bad_header")
        email = mail.EmailMultiAlternatives(
            subject=content.get("subject", ""),
            body=content.get("text", ""),
            from_email=self.options.get("from_email"),
            to=[message.address],
            reply_to=[self.options["reply_to"]] if self.options.get("reply_to") else None,
            headers={"X-Notifyhub-Delivery": message.delivery_id},
            connection=self.connection,
        )
        if content.get("html"):
            email.attach_alternative(content["html"], "text/html")
        return email

    def send_many(self, messages: Iterable[OutboundMessage]) -> Iterator[tuple[OutboundMessage, Outcome]]:
        """Send over one connection; if it cannot be opened, every message gets that error."""
        messages = iter(messages)
        try:
            self.open()
        except TransientChannelError as error:
            for message in messages:
                yield message, error
            return
        yield from super().send_many(messages)

    def send(self, message: OutboundMessage) -> SendResult:
        self.open()
        email = self.build(message)
        email.connection = self.connection
        try:
            email.send()
        except mail.BadHeaderError as exc:  # before smtplib: it is a ValueError, never transient
            raise PermanentChannelError(f"Bad e-mail header: {exc}", code="bad_header") from exc
        except smtplib.SMTPRecipientsRefused as exc:
            code, reply = next(iter(exc.recipients.values()))
            raise _smtp_error(code, reply) from exc
        except smtplib.SMTPResponseException as exc:
            self.close()
            raise _smtp_error(exc.smtp_code, exc.smtp_error) from exc
        except (TimeoutError, smtplib.SMTPException, OSError) as exc:
            self.close()  # the next send reconnects
            raise TransientChannelError(f"SMTP connection failed: {exc}", code="smtp_connection") from exc
        return SendResult(provider_message_id=email.extra_headers.get("Message-ID", ""))


def _message_id(from_email: str | None) -> str:
    domain = (from_email or "").rpartition("@")[2] or DNS_NAME
    return make_msgid(domain=domain)


def _smtp_error(code: int, reply) -> Exception:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else str(reply)
    error = TransientChannelError if 400 <= code < 500 else PermanentChannelError
    return error(f"SMTP {code}: {text}", code=str(code), status=code, response=text)


class SmtpOptions(serializers.Serializer):
    host = serializers.CharField(help_text="SMTP server host name.")
    port = serializers.IntegerField(default=587, min_value=1, max_value=65535)
    username = serializers.CharField(required=False, allow_blank=True, default="")
    password = serializers.CharField(required=False, allow_blank=True, default="", help_text="Secret.")
    security = serializers.ChoiceField(
        choices=[("none", "None"), ("starttls", "STARTTLS"), ("ssl", "SSL/TLS")], default="starttls"
    )
    timeout = serializers.FloatField(default=10.0, min_value=0.1, max_value=300)
    from_email = serializers.EmailField(help_text="Envelope and header From address.")
    reply_to = serializers.EmailField(required=False, allow_blank=True, default="")


class SmtpBackend(EmailChannelBackend):
    name = "smtp"
    label = "SMTP server"
    Options = SmtpOptions
    secret_fields = frozenset({"password"})

    def build(self, message: OutboundMessage) -> mail.EmailMultiAlternatives:
        email = super().build(message)
        # Our own Message-ID, so the result can name the message the server accepted.
        email.extra_headers["Message-ID"] = _message_id(self.options.get("from_email"))
        return email

    def get_connection(self):
        o = self.options
        return mail.get_connection(
            "django.core.mail.backends.smtp.EmailBackend",
            host=o["host"], port=o["port"], username=o.get("username") or None,
            password=o.get("password") or None, use_tls=o.get("security") == "starttls",
            use_ssl=o.get("security") == "ssl", timeout=o.get("timeout", 10.0), fail_silently=False,
        )
