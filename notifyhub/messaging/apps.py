from django.apps import AppConfig


class MessagingConfig(AppConfig):
    name = "notifyhub.messaging"
    label = "messaging"
    verbose_name = "Messaging"

    def ready(self):
        from notifyhub.messaging import tracking

        tracking.connect()
