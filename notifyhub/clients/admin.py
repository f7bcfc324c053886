"""Admin for API keys.

Built on djangorestframework-api-key's admin, which shows a new key once (in a message) and
stores only its hash; we add scopes as checkboxes and revocation. The library's own
``APIKey`` model is unused here, so its admin entry is removed to avoid confusion.
"""
import contextlib

from django import forms
from django.contrib import admin, messages
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from notifyhub.clients.models import ApiKey, Scope
from notifyhub.clients.services import api_key_revoke

with contextlib.suppress(admin.sites.NotRegistered):
    admin.site.unregister(APIKey)


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(choices=Scope.choices, widget=forms.CheckboxSelectMultiple, required=False)

    class Meta:
        model = ApiKey
        fields = ("name", "scopes", "expiry_date", "revoked")

    def clean_scopes(self) -> list[str]:
        return sorted(set(self.cleaned_data.get("scopes") or []))


@admin.register(ApiKey)
class ApiKeyAdmin(APIKeyModelAdmin):
    form = ApiKeyForm
    list_display = ("prefix", "name", "scope_list", "created", "expiry_date", "_has_expired", "revoked")
    list_filter = ("revoked", "created")
    search_fields = ("name", "prefix")
    ordering = ("-created",)
    actions = ("revoke",)

    @admin.display(description="scopes")
    def scope_list(self, obj):
        return ", ".join(obj.scopes or []) or "—"

    @admin.action(description="Revoke selected keys", permissions=("change",))
    def revoke(self, request, queryset):
        keys = list(queryset.filter(revoked=False))
        for api_key in keys:
            api_key_revoke(api_key=api_key)
        messages.success(request, f"{len(keys)} API key(s) revoked.")
