"""notifyhub: a self-hosted unified notification center."""
from notifyhub.celery import app as celery_app

__all__ = ("celery_app",)
