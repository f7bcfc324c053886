from django.apps import AppConfig


class BroadcastsConfig(AppConfig):
    name = "notifyhub.broadcasts"
    label = "broadcasts"
    verbose_name = "Broadcasts"
