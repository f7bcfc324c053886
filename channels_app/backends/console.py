"""Console e-mail: prints the message to the worker's standard output.

For development and demos only; it reaches nobody, so it is never a real channel.
"""
from rest_framework import serializers

from channels_app.backends.email import EmailChannelBackend


class ConsoleOptions(serializers.Serializer):
    from_email = serializers.EmailField(default="notifyhub@localhost")


class ConsoleEmailBackend(EmailChannelBackend):
    name = "console"
    label = "Console (prints e-mail, development only)"
    Options = ConsoleOptions

    def get_connection(self):
        from django.core import mail

        return mail.get_connection("django.core.mail.backends.console.EmailBackend", fail_silently=False)
