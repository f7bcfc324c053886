"""WSGI entry point (gunicorn notifyhub.wsgi)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "notifyhub.settings")
application = get_wsgi_application()
