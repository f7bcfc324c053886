"""Admin for recipients, their contact points and preferences, and categories.

Recipients can number in the millions: relations to them use autocomplete, searches use
indexed columns, and changelists skip the full count.
"""
from django.contrib import admin, messages

from preferences.models import Category, ContactPoint, Preference, Recipient


class ContactPointInline(admin.TabularInline):
    model = ContactPoint
    extra = 0
    fields = ("kind", "address", "app", "label", "active", "deactivated_reason", "created_at")
    readonly_fields = ("created_at",)


class PreferenceInline(admin.TabularInline):
    model = Preference
    extra = 0
    fields = ("category", "channel", "enabled", "updated_at")
    readonly_fields = ("updated_at",)


@admin.register(Recipient)
class RecipientAdmin(admin.ModelAdmin):
    list_display = ("external_id", "name", "locale", "timezone", "created_at")
    search_fields = ("external_id", "name", "contact_points__address")
    list_filter = ("locale",)
    ordering = ("external_id",)
    readonly_fields = ("created_at", "updated_at")
    inlines = (ContactPointInline, PreferenceInline)
    show_full_result_count = False


@admin.register(ContactPoint)
class ContactPointAdmin(admin.ModelAdmin):
    list_display = ("address", "kind", "app", "recipient", "label", "active", "deactivated_reason", "created_at")
    list_filter = ("kind", "active")
    search_fields = ("address", "recipient__external_id", "recipient__name")
    list_select_related = ("recipient",)
    autocomplete_fields = ("recipient",)
    ordering = ("-created_at",)
    readonly_fields = ("created_at",)
    actions = ("deactivate", "reactivate")
    show_full_result_count = False

    @admin.action(description="Deactivate (suppress) selected contact points", permissions=("change",))
    def deactivate(self, request, queryset):
        count = queryset.filter(active=True).update(active=False, deactivated_reason="suppressed by operator")
        messages.success(request, f"{count} contact point(s) deactivated.")

    @admin.action(description="Reactivate selected contact points", permissions=("change",))
    def reactivate(self, request, queryset):
        count = queryset.filter(active=False).update(active=True, deactivated_reason="")
        messages.success(request, f"{count} contact point(s) reactivated.")


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("key", "name", "critical", "quiet_hours", "over_cap", "channel_defaults")
    list_filter = ("critical",)
    search_fields = ("key", "name")
    ordering = ("key",)
    prepopulated_fields = {"key": ("name",)}


@admin.register(Preference)
class PreferenceAdmin(admin.ModelAdmin):
    list_display = ("recipient", "category", "channel", "enabled", "updated_at")
    list_filter = ("enabled", "channel", "category")
    search_fields = ("recipient__external_id", "recipient__name")
    list_select_related = ("recipient", "category")
    autocomplete_fields = ("recipient",)
    ordering = ("recipient__external_id", "category", "channel")
    readonly_fields = ("updated_at",)
    show_full_result_count = False
