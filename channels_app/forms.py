"""Admin forms for provider accounts.

Secrets never travel back to the browser: the ``secrets`` field is write-only (a password
input that is never re-rendered), and what is typed into it is merged into the stored,
encrypted secrets. Validation goes through the backend's own option schema, so an operator
sees the same field-level errors the workers would raise, before anything is written.
"""
import json

from django import forms
from django.core.exceptions import ValidationError

from channels_app.errors import ChannelConfigurationError
from channels_app.models import ChannelConfig
from channels_app.option_checks import anymail_credential_errors, unknown_option_errors
from channels_app.registry import all_backends, backend_choices


def _backend_choice_list() -> list[tuple[str, str]]:
    """Backend names with their label and kind, so a mismatch is easy to spot."""
    backends = all_backends()
    return [("", "---------")] + [
        (name, f"{label} — {name} ({backends[name].kind})") for name, label in backend_choices()
    ]


def _secret_value_ok(value) -> bool:
    if isinstance(value, dict):  # anymail's esp_credentials: {"server_token": "..."}
        return all(isinstance(v, str) for v in value.values())
    return isinstance(value, str | int | float) and not isinstance(value, bool)


class ChannelConfigForm(forms.ModelForm):
    backend = forms.ChoiceField(choices=_backend_choice_list)
    options = forms.JSONField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 8, "cols": 80, "style": "font-family: monospace"}),
        help_text="Non-secret options as a JSON object, e.g. {\"host\": \"smtp.example.com\", \"port\": 587}. "
                  "See the backend reference below.",
    )
    secrets = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"size": 80, "autocomplete": "new-password"}),
        help_text="Write-only. A JSON object of secret options, e.g. {\"password\": \"...\"}. Leave empty to keep "
                  "the stored secrets; keys you enter replace the stored value, keys you leave out or blank are "
                  "kept.",
    )

    class Meta:
        model = ChannelConfig
        fields = ("name", "kind", "backend", "enabled", "priority", "weight", "rate_limit", "failure_threshold",
                  "open_seconds", "options")

    def clean_options(self):
        options = self.cleaned_data.get("options")
        if options in (None, ""):
            return {}
        if not isinstance(options, dict):
            raise ValidationError("Enter a JSON object.")
        return options

    def clean_secrets(self) -> dict:
        raw = self.cleaned_data.get("secrets") or ""
        if not raw:
            return {}
        try:
            secrets = json.loads(raw)
        except ValueError:
            # Do not echo the input back: it may be a secret typed into the wrong place.
            raise ValidationError("Enter a JSON object, e.g. {\"password\": \"...\"}.") from None
        if not isinstance(secrets, dict):
            raise ValidationError("Enter a JSON object, e.g. {\"password\": \"...\"}.")
        bad = sorted(k for k, v in secrets.items() if v is not None and not _secret_value_ok(v))
        if bad:
            raise ValidationError(f"Secret values must be strings (or an object of strings, such as anymail's "
                                  f"esp_credentials): {', '.join(bad)}.")
        return {k: v for k, v in secrets.items() if v not in ("", None)}

    def clean(self):
        cleaned = super().clean()
        backend_name = cleaned.get("backend")
        options = cleaned.get("options") or {}
        cls = all_backends().get(backend_name) if backend_name else None
        if cls is not None:
            # Secret keys belong in the encrypted field, never in plain-text options.
            misplaced = sorted(set(options) & set(cls.secret_fields))
            if misplaced:
                self.add_error("options", f"{', '.join(misplaced)} is secret: enter it in the secrets field.")
            for key, messages in unknown_option_errors(cls, options).items():
                self.add_error("options", f"{key}: {' '.join(messages)}")
            unknown = sorted(set(self.cleaned_data.get("secrets") or {}) - set(cls.secret_fields))
            if unknown:
                known = ", ".join(sorted(cls.secret_fields)) or "none"
                self.add_error("secrets", f"Not a secret option of {backend_name}: {', '.join(unknown)} "
                                          f"(secret options: {known}).")
        try:
            stored = self.instance.secrets if self.instance.pk else {}
        except ChannelConfigurationError as exc:
            self.add_error("secrets", f"{exc} Enter every secret again.")
            stored = {}
        # Put the merged secrets on the instance so the model validation that follows
        # (validated_options) checks options and secrets together, as the workers will.
        secrets = {**stored, **(self.cleaned_data.get("secrets") or {})}
        self.instance.set_secrets(secrets)
        if cls is not None and not self.errors:
            for field, messages in anymail_credential_errors(cls, {**options, **secrets}).items():
                self.add_error("secrets" if field in cls.secret_fields else "options",
                               f"{field}: {' '.join(messages)}")
        return cleaned
