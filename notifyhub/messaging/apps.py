from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "notifyhub.messaging"
    label = "messaging"
    verbose_name = "Messaging"
