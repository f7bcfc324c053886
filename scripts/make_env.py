"""Print a .env for the embedded default with freshly generated secrets."""
import secrets

from cryptography.fernet import Fernet

print("# Written by `make run`; never commit. See .env.example for every variable.")
print(f"SECRET_KEY={secrets.token_urlsafe(50)}")
print(f"NOTIFYHUB_SECRETS_KEY={Fernet.generate_key().decode()}")
