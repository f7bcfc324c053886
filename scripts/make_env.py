"""Write a .env for the embedded default with freshly generated secrets.

``python scripts/make_env.py PATH`` creates PATH readable by its owner only (0600): it holds
SECRET_KEY and the key that encrypts provider credentials. An existing file is left alone.
Without PATH the file is printed, for piping elsewhere.
"""
import os
import secrets
import sys

from cryptography.fernet import Fernet


def env_text() -> str:
    return (
        "# Written by `make run`; never commit. See .env.example for every variable.\n"
        f"SECRET_KEY={secrets.token_urlsafe(50)}\n"
        f"NOTIFYHUB_SECRETS_KEY={Fernet.generate_key().decode()}\n"
    )


def write_private(path: str, text: str) -> bool:
    """Create ``path`` with mode 0600 (whatever the umask); False if it already exists."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(text)
    return True


if __name__ == "__main__":
    if len(sys.argv) > 1:
        if not write_private(sys.argv[1], env_text()):
            print(f"{sys.argv[1]} exists; left unchanged.", file=sys.stderr)
    else:
        sys.stdout.write(env_text())
