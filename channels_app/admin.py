"""Admin for provider accounts and the in-app inbox.

Operators configure providers here, so the page must never show a stored secret (only its
mask), must turn every schema problem into a form error, and must let them try an account
("Send test message") before real traffic depends on it.
"""
import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

from channels_app.breaker import breaker_reset, breaker_state
from channels_app.content import CONTENT_PARTS
from channels_app.errors import ChannelConfigurationError, ChannelError
from channels_app.forms import ChannelConfigForm
from channels_app.models import ChannelConfig, InboxEntry
from channels_app.registry import all_backends
from channels_app.services import channel_config_save, channel_test_send


def _field_type(field) -> str:
    choices = getattr(field, "choices", None)
    if choices:
        return "one of " + ", ".join(str(c) for c in choices)
    return type(field).__name__.removesuffix("Field").lower() or "value"


def _backend_reference(name: str, cls) -> str:
    """One backend's options as an HTML table: name, type, required/default, secret, help."""
    from rest_framework.fields import empty

    rows = []
    for field_name, field in cls.option_fields().items():
        if field.required:
            need = "required"
        elif field.default is not empty:
            need = f"default {field.default!r}"
        else:
            need = "optional"
        rows.append((field_name, _field_type(field), need,
                     "secret" if field_name in cls.secret_fields else "", field.help_text or ""))
    body = format_html_join(
        "", "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td><strong>{}</strong></td><td>{}</td></tr>", rows
    ) or mark_safe("<tr><td colspan='5'>No options.</td></tr>")
    return format_html(
        "<p><strong>{}</strong> — {} ({})</p><table><thead><tr><th>option</th><th>type</th><th>required</th>"
        "<th>secret</th><th>help</th></tr></thead><tbody>{}</tbody></table>",
        name, cls.label or name, cls.kind, body,
    )


@admin.register(ChannelConfig)
class ChannelConfigAdmin(admin.ModelAdmin):
    form = ChannelConfigForm
    list_display = ("name", "kind", "backend", "enabled", "priority", "weight", "rate", "circuit", "updated_at")
    list_filter = ("kind", "backend", "enabled")
    search_fields = ("name", "backend")
    ordering = ("kind", "priority", "name")
    readonly_fields = ("stored_secrets", "backend_reference", "circuit_breaker", "created_at", "updated_at")
    actions = ("send_test_message", "reset_circuit_breaker")
    fieldsets = (
        (None, {"fields": ("name", "kind", "backend", "enabled")}),
        ("Routing and limits", {
            "fields": ("priority", "weight", "rate_limit", "failure_threshold", "open_seconds", "circuit_breaker"),
            "description": "Accounts of one kind are tried by priority (lowest first); equal priorities share "
                           "traffic by weight. The circuit breaker passes over an account after consecutive "
                           "failures or an account error, and probes it again after the open time.",
        }),
        ("Options", {"fields": ("options", "secrets", "stored_secrets")}),
        ("Backend reference", {"fields": ("backend_reference",)}),
        ("History", {"fields": ("created_at", "updated_at")}),
    )

    @admin.display(description="stored secrets")
    def stored_secrets(self, obj):
        """Masks only: enough to tell an operator which secrets are set."""
        if obj is None or not obj.pk:
            return "—"
        try:
            masked = obj.masked_secrets()
        except ChannelConfigurationError as exc:
            return format_html('<span class="errornote">{}</span>', str(exc))
        if not masked:
            return "none"
        return format_html_join(mark_safe("<br>"), "<code>{}</code>: {}", sorted(masked.items()))

    @admin.display(description="rate")
    def rate(self, obj):
        default = getattr(obj.backend_class, "default_rate", "") if obj.backend in all_backends() else ""
        return obj.rate_limit or (f"{default} (provider default)" if default else "unlimited")

    @admin.display(description="circuit")
    def circuit(self, obj):
        return breaker_state(obj.pk)["state"]

    @admin.display(description="circuit breaker")
    def circuit_breaker(self, obj):
        if obj is None or not obj.pk:
            return "—"
        state = breaker_state(obj.pk)
        parts = [f"state: {state['state']}", f"consecutive failures: {state['failures']}"]
        if state["opened_at"]:
            parts.append(f"opened at {state['opened_at']:%Y-%m-%d %H:%M:%S} UTC")
        if state["reopen_at"]:
            parts.append(f"probe from {state['reopen_at']:%Y-%m-%d %H:%M:%S} UTC")
        return " · ".join(parts) + " — use the “Reset circuit breaker” action to close it."

    @admin.action(description="Reset circuit breaker (close it)", permissions=("change",))
    def reset_circuit_breaker(self, request, queryset):
        for config in queryset:
            breaker_reset(config.pk)
        messages.success(request, f"Circuit breaker closed for {queryset.count()} account(s).")

    @admin.display(description="options of the backend")
    def backend_reference(self, obj):
        """The selected backend's option schema; on the add page, every backend's."""
        backends = all_backends()
        if obj is not None and obj.pk and obj.backend in backends:
            return _backend_reference(obj.backend, backends[obj.backend])
        return format_html_join(
            "", "<details><summary>{}</summary>{}</details>",
            ((f"{name} ({cls.kind})", _backend_reference(name, cls)) for name, cls in sorted(backends.items())),
        )

    def save_model(self, request, obj, form, change):
        # The form already merged and validated the secrets; the service is the single writer.
        channel_config_save(config=obj, secrets=form.cleaned_data.get("secrets") or {})

    # --- "Send test message" -------------------------------------------------------------
    def get_urls(self):
        return [
            path("<path:object_id>/test-send/", self.admin_site.admin_view(self.test_send_view),
                 name=f"{self.opts.app_label}_{self.opts.model_name}_test_send"),
        ] + super().get_urls()

    @admin.action(description="Send test message (first selected)")
    def send_test_message(self, request, queryset):
        config = queryset.first()
        return HttpResponseRedirect(
            reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_test_send", args=[config.pk]))

    def test_send_view(self, request, object_id):
        """Ask for an address, send the fixed test message, report the provider's answer."""
        config = get_object_or_404(ChannelConfig, pk=object_id)
        if not self.has_change_permission(request, config):
            raise PermissionDenied
        address = (request.POST.get("address") or "").strip() if request.method == "POST" else ""
        content_text = (request.POST.get("content") or "").strip() if request.method == "POST" else ""
        if request.method == "POST":
            try:
                content = json.loads(content_text) if content_text else None
            except json.JSONDecodeError as exc:
                content = None
                messages.error(request, f"Content is not valid JSON: {exc}")
                address = ""
            if content is not None and not isinstance(content, dict):
                messages.error(request, "Content must be a JSON object of parts.")
            elif not address:
                messages.error(request, "Enter an address.")
            else:
                try:
                    result = channel_test_send(config=config, address=address, content=content)
                except ChannelError as exc:
                    messages.error(request, f"Test message to {address} failed: {exc.detail}")
                except ChannelConfigurationError as exc:
                    messages.error(request, f"Channel configuration error: {exc}")
                except ValidationError as exc:
                    messages.error(request, f"Invalid: {'; '.join(exc.messages)}")
                else:
                    messages.success(request, f"Test message sent to {address} through {config.name} "
                                              f"(provider message id: {result.provider_message_id or '—'}).")
                    return HttpResponseRedirect(request.path)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": config,
            "title": f"Send a test message through {config.name}",
            "address": address,
            "content": content_text,
            "content_help": "Optional JSON object of content parts merged over the test message, e.g. "
                            '{"template_code": "SMS_123"} for Aliyun or {"template_id": "...", "data": {...}} '
                            "for WeChat. Parts: " + ", ".join(CONTENT_PARTS.get(config.kind, {})),
            "address_help": "Recipient external id (the inbox key)." if config.kind == "inapp"
            else f"A {config.get_kind_display()} address.",
        }
        return TemplateResponse(request, "admin/channels_app/channelconfig/test_send.html", context)


class ReadFilter(admin.SimpleListFilter):
    title = "read"
    parameter_name = "read"

    def lookups(self, request, model_admin):
        return (("yes", "Read"), ("no", "Unread"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(read_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(read_at__isnull=True)
        return queryset


@admin.register(InboxEntry)
class InboxEntryAdmin(admin.ModelAdmin):
    """Written by the in-app backend; operators look and may delete, but do not author."""

    list_display = ("recipient_key", "title", "created_at", "read_at")
    list_filter = (ReadFilter, "created_at")
    search_fields = ("=recipient_key", "title")
    ordering = ("-created_at",)
    date_hierarchy = "created_at"
    readonly_fields = ("recipient_key", "delivery_id", "title", "body", "url", "data", "created_at", "read_at")
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
