"""Idempotency records, read-only: useful to answer "why did my retry get the old answer?"."""
from django.contrib import admin

from notifyhub.api.models import IdempotencyRecord


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(admin.ModelAdmin):
    list_display = ("key", "api_key", "state", "response_status", "created_at")
    list_filter = ("state", "response_status")
    list_select_related = ("api_key",)
    search_fields = ("=key", "api_key__prefix", "api_key__name")
    date_hierarchy = "created_at"
    ordering = ("-created_at",)
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
