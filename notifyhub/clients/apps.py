from django.apps import AppConfig


class ClientsConfig(AppConfig):
    name = "notifyhub.clients"
    label = "clients"
    verbose_name = "API clients"
