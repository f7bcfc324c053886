"""The kinds of channel a message can travel on."""
from django.db import models


class ChannelKind(models.TextChoices):
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    PUSH = "push", "App push"
    INAPP = "inapp", "In-app inbox"
    WECHAT = "wechat", "WeChat"
    CHAT = "chat", "Chat robot"
    WEBHOOK = "webhook", "Webhook"
