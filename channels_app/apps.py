from django.apps import AppConfig


class ChannelsAppConfig(AppConfig):
    name = "channels_app"
    verbose_name = "Channels"

    def ready(self):
        from channels_app import logredact

        logredact.install()  # provider URLs carry credentials: mask them in every log record
