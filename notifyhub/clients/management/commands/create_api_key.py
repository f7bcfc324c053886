"""``manage.py create_api_key NAME --scopes send,read,manage``: prints the key once."""
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from notifyhub.clients.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key and print it (it cannot be shown again)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--scopes", default="send,read", help="Comma-separated: send,read,manage")

    def handle(self, *args, name, scopes, **options):
        try:
            api_key, key = api_key_create(name=name, scopes=[s.strip() for s in scopes.split(",") if s.strip()])
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stderr.write(f"Created API key {api_key.name!r} ({api_key.prefix}) with scopes {api_key.scopes}.")
        self.stdout.write(key)
