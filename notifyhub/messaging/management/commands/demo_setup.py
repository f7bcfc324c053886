"""``manage.py demo_setup``: demo data for the embedded run, created once and reused.

Creates an operator account, an API key, two categories, a template, an in-app channel and a
console e-mail channel, then prints how to reach everything. The operator password and the
API key are generated on the first run and kept in ``var/`` (git-ignored) so later runs can
print them again.
"""
import secrets
import shlex

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from channels_app.models import ChannelConfig
from notifyhub.clients.models import ApiKey
from notifyhub.clients.services import api_key_create
from notifyhub.messaging.models import Template
from preferences.models import Category

OPERATOR = "operator"
WELCOME = {
    "email": {
        "subject": "Welcome to notifyhub, {{ name }}",
        "text": "Hello {{ name }},\n\nyour first notifyhub message arrived.",
        "html": "<p>Hello <b>{{ name }}</b>,</p><p>your first notifyhub message arrived.</p>",
    },
    "inapp": {"title": "Welcome, {{ name }}", "body": "Your first notifyhub message arrived.", "url": "/welcome"},
}


class Command(BaseCommand):
    help = "Create (or reuse) the demo operator, API key, categories, template and channels."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=8000)

    def handle(self, *args, port, **options):
        var = settings.VAR_DIR
        var.mkdir(parents=True, exist_ok=True)
        with transaction.atomic():
            password = self._operator(var / "demo-operator-password")
            key = self._api_key(var / "demo-api-key")
            account, _ = Category.objects.get_or_create(
                key="account", defaults={"name": "Account", "critical": True,
                                         "description": "Security and account messages; cannot be muted."})
            Category.objects.get_or_create(
                key="marketing", defaults={"name": "Marketing", "channel_defaults": {"sms": False},
                                           "description": "News and offers."})
            Template.objects.get_or_create(key="welcome", defaults={
                "name": "Welcome", "category": account, "variables": ["name"], "content": WELCOME,
                "sample_context": {"name": "Ada"}})
            ChannelConfig.objects.get_or_create(name="inapp", defaults={"kind": "inapp", "backend": "inapp"})
            ChannelConfig.objects.get_or_create(
                name="console-email",
                defaults={"kind": "email", "backend": "console", "options": {"from_email": "notifyhub@localhost"}})
        self._banner(port, password, key)

    def _operator(self, path) -> str:
        user_model = get_user_model()
        if path.exists() and user_model.objects.filter(username=OPERATOR).exists():
            return path.read_text().strip()
        password = secrets.token_urlsafe(12)
        user, _ = user_model.objects.get_or_create(username=OPERATOR, defaults={"email": "operator@localhost"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        path.write_text(password)
        path.chmod(0o600)
        return password

    def _api_key(self, path) -> str:
        if path.exists():
            key = path.read_text().strip()
            if ApiKey.objects.is_valid(key):
                return key
        _, key = api_key_create(name="demo", scopes=["send", "read", "manage"])
        path.write_text(key)
        path.chmod(0o600)
        return key

    def _banner(self, port: int, password: str, key: str) -> None:
        base = f"http://127.0.0.1:{port}"
        body = ('{"template": "welcome", "to": [{"external_id": "demo-user", "email": "demo@example.com", '
                '"name": "Demo"}], "context": {"name": "Demo"}}')
        curl = (f"curl -sS -X POST {base}/api/v1/messages -H {shlex.quote('Authorization: Api-Key ' + key)} "
                f"-H 'Content-Type: application/json' -d {shlex.quote(body)}")
        self.stdout.write("\n".join([
            "",
            "notifyhub is starting (web, worker, scheduler). Ctrl-C stops all of it.",
            f"  Admin:    {base}/admin/   user: {OPERATOR}   password: {password}",
            f"  API docs: {base}/api/docs/   (ReDoc: {base}/api/redoc/)",
            f"  API key:  {key}",
            "  Send a first message:",
            f"CURL: {curl}",
            "",
        ]))
