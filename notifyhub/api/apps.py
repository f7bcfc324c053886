from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "notifyhub.api"
    label = "api"
    verbose_name = "API"

    def ready(self):
        from notifyhub.api import schema  # noqa: F401  registers the OpenAPI auth extension
