"""``manage.py rotate_secrets``: re-encrypt every stored channel secret under the newest key.

Key rotation puts a new key first in ``NOTIFYHUB_SECRETS_KEY`` (``<new>,<old>``); new writes use
it at once, but stored secrets stay under the old key until rewritten. This command rewrites
them, then ``--check`` confirms that nothing still needs the old key before it is dropped.

Each row is rewritten only if it still holds the token that was read (a conditional UPDATE), so
an operator saving the account at the same moment wins; their save already used the new key.
"""
from django.core.management.base import BaseCommand, CommandError

from channels_app import crypto
from channels_app.models import ChannelConfig


class Command(BaseCommand):
    help = "Re-encrypt every stored channel secret with the first key of NOTIFYHUB_SECRETS_KEY."

    def add_arguments(self, parser):
        parser.add_argument("--check", action="store_true",
                            help="Change nothing; fail if any secret is not under the newest key yet.")

    def handle(self, *args, check: bool = False, **options):
        stored = ChannelConfig.objects.exclude(secrets_encrypted="").order_by("pk")
        stale = [(pk, name, token) for pk, name, token in stored.values_list("pk", "name", "secrets_encrypted")
                 if not crypto.is_current(token)]
        if check:
            if stale:
                raise CommandError(f"{len(stale)} account(s) still need an older key: "
                                   f"{', '.join(name for _, name, _ in stale[:20])}. Run rotate_secrets.")
            self.stdout.write("Every stored secret is under the newest key.")
            return
        rotated = 0
        for pk, name, token in stale:
            try:
                new_token = crypto.rotate(token)
            except Exception as exc:  # noqa: BLE001 — name the account, keep going with the others
                self.stderr.write(f"{name}: cannot decrypt with any configured key ({type(exc).__name__})")
                continue
            rotated += ChannelConfig.objects.filter(pk=pk, secrets_encrypted=token).update(
                secrets_encrypted=new_token)
        self.stdout.write(f"Re-encrypted {rotated} of {stored.count()} account(s) with stored secrets.")
        if rotated < len(stale):
            raise CommandError("Some secrets were not re-encrypted; see above, then run the command again.")
