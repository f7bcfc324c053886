"""Admin for templates, messages, deliveries and their timelines.

Templates are authored here, with a live preview and the same content checks as the API.
Messages, deliveries and events are written only by the pipeline, so operators get read-only
views (plus "cancel") that stay fast on large tables: no full counts, capped inlines,
exact-match searches on indexed columns.
"""
import json

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils.html import escape, format_html, format_html_join

from notifyhub.messaging.models import (
    Delivery,
    DeliveryEvent,
    DispatchChunk,
    EarlyReceipt,
    Message,
    MessageRecipient,
    Template,
)
from notifyhub.messaging.rendering import recipient_context, render_parts
from notifyhub.messaging.services.cancel import message_cancel
from notifyhub.messaging.template_checks import template_content_check, template_routing_check

INLINE_DELIVERY_LIMIT = 100
_JSON_WIDGET = forms.Textarea(attrs={"rows": 10, "cols": 100, "style": "font-family: monospace"})


def pretty_json(value) -> str:
    return format_html('<pre style="white-space: pre-wrap">{}</pre>',
                       json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str))


class ReadOnlyAdminMixin:
    """Rows written by the pipeline: visible, never added, edited or deleted by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# --- Templates ---------------------------------------------------------------------------------
class TemplateForm(forms.ModelForm):
    class Meta:
        model = Template
        fields = ("key", "name", "category", "active", "variables", "content", "translations", "sample_context",
                  "routing", "fallback_chain", "fallback_timeout_seconds", "dedup_window_seconds")
        widgets = {name: _JSON_WIDGET for name in ("variables", "content", "translations", "sample_context",
                                                   "fallback_chain")}

    def clean(self):
        cleaned = super().clean()
        content = cleaned.get("content")
        translations = cleaned.get("translations") or {}
        variables = cleaned.get("variables") or []
        if not isinstance(variables, list):
            self.add_error("variables", 'Enter a JSON list of names, e.g. ["name", "code"].')
        if not isinstance(translations, dict):
            self.add_error("translations", "Enter a JSON object keyed by locale.")
        if not isinstance(cleaned.get("sample_context") or {}, dict):
            self.add_error("sample_context", "Enter a JSON object.")
        if content is None or self.errors:
            return cleaned
        try:
            template_content_check(content=content, translations=translations, variables=variables)
            template_routing_check(routing=cleaned.get("routing"), fallback_chain=cleaned.get("fallback_chain"),
                                   content=content)
        except ValidationError as exc:
            self.add_error(None, exc)  # keyed "content", "translations", "variables" or "fallback_chain"
        return cleaned


def _render_part(name: str, value) -> str:
    if name == "html":
        # Rendered HTML runs in a sandboxed frame: no scripts, no same-origin access to the admin.
        return format_html('<iframe sandbox="" srcdoc="{}" style="width: 100%; height: 240px; '
                           'border: 1px solid #ccc; background: #fff"></iframe>', escape(value))
    if isinstance(value, str):
        return format_html('<pre style="white-space: pre-wrap">{}</pre>', value)
    return pretty_json(value)


def template_preview_html(template: Template) -> str:
    """Each channel's content rendered against ``sample_context``; errors are shown, not raised."""
    sample = template.sample_context if isinstance(template.sample_context, dict) else {}
    context = {**sample, "recipient": recipient_context(external_id="preview", name="Preview", locale="", data={})}
    variants = [("", template.content or {})] + sorted((template.translations or {}).items())
    sections = []
    for locale, tree in variants:
        if not isinstance(tree, dict):
            continue
        for channel, parts in tree.items():
            heading = f"{channel} ({locale})" if locale else channel
            try:
                if not isinstance(parts, dict):
                    raise ValueError("expected an object of parts")
                rendered = render_parts(parts, context)
            except Exception as exc:  # noqa: BLE001 — any failure is the operator's to read, never a 500
                sections.append(format_html('<h4>{}</h4><p class="errornote">Render error: {}</p>', heading, exc))
                continue
            rows = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>",
                                    ((name, _render_part(name, value)) for name, value in rendered.items()))
            sections.append(format_html('<h4>{}</h4><table style="width: 100%">{}</table>', heading, rows))
    if not sections:
        return "No content."
    return format_html_join("", "{}", ((s,) for s in sections))


@admin.register(Template)
class TemplateAdmin(admin.ModelAdmin):
    form = TemplateForm
    list_display = ("key", "name", "category", "channel_list", "active", "updated_at")
    list_filter = ("active", "category")
    search_fields = ("key", "name")
    list_select_related = ("category",)
    autocomplete_fields = ("category",)
    ordering = ("key",)
    readonly_fields = ("preview", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("key", "name", "category", "active")}),
        ("Content", {"fields": ("variables", "content", "translations")}),
        ("Routing", {"fields": ("routing", "fallback_chain", "fallback_timeout_seconds", "dedup_window_seconds"),
                     "description": 'Fallback: e.g. ["push", "sms", "email"]; the next channel is tried only when '
                                    "the previous cannot deliver."}),
        ("Preview", {"fields": ("sample_context", "preview"),
                     "description": "Saved content rendered against the sample context; save to refresh."}),
        ("History", {"fields": ("created_at", "updated_at")}),
    )

    @admin.display(description="channels")
    def channel_list(self, obj):
        return ", ".join(obj.channels)

    @admin.display(description="preview")
    def preview(self, obj):
        if obj is None or not obj.pk:
            return "Save the template to see a preview."
        return template_preview_html(obj)


# --- Messages ----------------------------------------------------------------------------------
class FirstRowsFormSet(BaseInlineFormSet):
    """Shows only the first rows: a broadcast can have a million deliveries."""

    limit = INLINE_DELIVERY_LIMIT

    def get_queryset(self):
        if not hasattr(self, "_first_rows"):
            rows = super().get_queryset()[: self.limit]
            list(rows)  # evaluate once; the formset indexes into it
            self._first_rows = rows
        return self._first_rows


class DeliveryInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = Delivery
    formset = FirstRowsFormSet
    fields = ("delivery_link", "recipient", "channel", "address", "status", "reason", "attempts", "sent_at")
    readonly_fields = fields
    extra = 0
    verbose_name_plural = f"deliveries (first {INLINE_DELIVERY_LIMIT}; see the summary for all)"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("recipient")

    @admin.display(description="delivery")
    def delivery_link(self, obj):
        return format_html('<a href="{}">{}</a>', reverse("admin:messaging_delivery_change", args=[obj.pk]),
                           str(obj.pk)[:8])


@admin.register(Message)
class MessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "template", "status", "recipient_count", "api_key", "send_at", "created_at",
                    "completed_at")
    list_filter = ("status", "template")
    list_select_related = ("template", "api_key")
    search_fields = ("=id", "=idempotency_key", "template__key")
    search_help_text = "Exact message id or idempotency key, or part of a template key."
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    show_full_result_count = False
    actions = ("cancel_unsent",)
    inlines = (DeliveryInline,)
    fields = ("id", "template", "status", "delivery_summary", "recipient_count", "chunks_summary", "channels",
              "context_pretty", "api_key", "idempotency_key", "send_at", "created_at", "updated_at",
              "completed_at")
    readonly_fields = fields

    def has_cancel_permission(self, request):
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    @admin.action(description="Cancel unsent deliveries", permissions=("cancel",))
    def cancel_unsent(self, request, queryset):
        total = sum(message_cancel(message=message) for message in queryset)
        messages.success(request, f"{total} unsent deliveries cancelled in {queryset.count()} message(s).")

    @admin.display(description="context")
    def context_pretty(self, obj):
        return pretty_json(obj.context)

    @admin.display(description="dispatch chunks")
    def chunks_summary(self, obj):
        counts = obj.chunks.values("status").annotate(n=Count("pk")).order_by("status")
        url = reverse("admin:messaging_dispatchchunk_changelist") + f"?message__id__exact={obj.pk}"
        parts = format_html_join(", ", "{}: {}", ((c["status"], c["n"]) for c in counts)) or "none"
        return format_html('{} — <a href="{}">list</a>', parts, url)

    @admin.display(description="deliveries")
    def delivery_summary(self, obj):
        counts = obj.deliveries.values("status").annotate(n=Count("pk")).order_by("status")
        url = reverse("admin:messaging_delivery_changelist") + f"?message={obj.pk}"
        parts = format_html_join(", ", "{}: {}", ((c["status"], c["n"]) for c in counts)) or "none"
        return format_html('{} — <a href="{}">list all deliveries</a>', parts, url)


# --- Deliveries --------------------------------------------------------------------------------
class DeliveryEventInline(ReadOnlyAdminMixin, admin.TabularInline):
    model = DeliveryEvent
    fields = ("at", "status", "detail")
    readonly_fields = fields
    extra = 0
    verbose_name_plural = "timeline"


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("short_id", "message_link", "recipient", "channel", "address", "status", "reason", "attempts",
                    "created_at", "sent_at")
    list_filter = ("status", "channel", "lane", "reason")
    list_select_related = ("recipient", "message__template")
    search_fields = ("=id", "=address", "=recipient__external_id", "=provider_message_id")
    search_help_text = "Exact delivery id, address, recipient external id or provider message id."
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    show_full_result_count = False
    inlines = (DeliveryEventInline,)
    fieldsets = (
        (None, {"fields": ("id", "message_link", "recipient", "channel", "address", "app", "lane", "channel_config",
                           "status", "reason", "fallback_from", "fallback_at")}),
        ("Why", {"fields": ("explain_list", "detail")}),
        ("Attempts", {"fields": ("attempts", "next_attempt_at", "claimed_at", "provider_message_id",
                                 "created_at", "updated_at", "sent_at")}),
        ("Rendered content", {"fields": ("content_pretty",)}),
    )
    readonly_fields = ("id", "message_link", "recipient", "channel", "address", "app", "lane", "fallback_from",
                       "fallback_at", "channel_config", "status", "reason",
                       "explain_list", "detail", "attempts", "next_attempt_at", "claimed_at", "provider_message_id",
                       "created_at", "updated_at", "sent_at", "content_pretty")

    @admin.display(description="id", ordering="id")
    def short_id(self, obj):
        return str(obj.pk)[:8]

    @admin.display(description="message")
    def message_link(self, obj):
        return format_html('<a href="{}">{}</a>', reverse("admin:messaging_message_change", args=[obj.message_id]),
                           obj.message)

    @admin.display(description="explain")
    def explain_list(self, obj):
        if not obj.explain:
            return "—"
        items = obj.explain if isinstance(obj.explain, list) else [obj.explain]
        return format_html("<ol>{}</ol>", format_html_join("", "<li>{}</li>", ((str(item),) for item in items)))

    @admin.display(description="content")
    def content_pretty(self, obj):
        return pretty_json(obj.content)


@admin.register(DeliveryEvent)
class DeliveryEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("at", "delivery", "status", "detail")
    list_filter = ("status",)
    list_select_related = ("delivery",)
    search_fields = ("=delivery__id",)
    search_help_text = "Exact delivery id."
    date_hierarchy = "at"
    ordering = ("-at",)
    show_full_result_count = False


@admin.register(MessageRecipient)
class MessageRecipientAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The stored audience of a message, for checking who a broadcast was meant for."""

    list_display = ("message", "recipient")
    list_select_related = ("message__template", "recipient")
    search_fields = ("=message__id", "=recipient__external_id")
    search_help_text = "Exact message id or recipient external id."
    show_full_result_count = False


@admin.register(DispatchChunk)
class DispatchChunkAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Slices of large messages' audiences: a chunk that keeps failing shows its last error here."""

    list_display = ("message", "first_id", "last_id", "status", "attempts", "updated_at")
    list_filter = ("status",)
    list_select_related = ("message__template",)
    search_fields = ("=message__id",)
    search_help_text = "Exact message id."
    fields = ("message", "first_id", "last_id", "status", "attempts", "last_error", "updated_at")
    readonly_fields = fields
    show_full_result_count = False


@admin.register(EarlyReceipt)
class EarlyReceiptAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Provider reports that arrived before their send was recorded, waiting to be applied."""

    list_display = ("provider_message_id", "source", "status", "received_at")
    list_filter = ("source", "status")
    search_fields = ("=provider_message_id",)
    search_help_text = "Exact provider message id."
    show_full_result_count = False
