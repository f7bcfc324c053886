"""Admin for topics, subscriptions, segments and imports.

Topics can have hundreds of thousands of subscribers: the topic page adds and removes them by
pasted external ids (set-based, like the API) and links to the filtered subscription list
instead of rendering them inline. A recipient's topics are shown on the recipient's page by an
inline this module adds to the registered recipient admin (preferences never imports broadcasts).
"""
import django_celery_beat.admin  # noqa: F401 — registered before it is guarded below
from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django_celery_beat.models import PeriodicTask

import preferences.admin  # noqa: F401 — the recipient admin must be registered before it is extended
from notifyhub.broadcasts.models import (
    Broadcast,
    BroadcastRun,
    BroadcastStatus,
    Import,
    ImportStatus,
    Segment,
    Subscription,
    Topic,
)
from notifyhub.broadcasts.runs import (
    BEAT_PREFIX,
    broadcast_audience,
    broadcast_cancel,
    broadcast_delete,
    broadcast_pause,
    broadcast_resume,
    broadcast_schedule,
)
from notifyhub.broadcasts.segments import SegmentInvalid, segment_validate
from notifyhub.broadcasts.selectors import segment_preview
from notifyhub.broadcasts.services import (
    AudienceRejected,
    import_create,
    topic_subscribers_add,
    topic_subscribers_remove,
)
from preferences.models import Recipient


def _ids(text: str) -> list[str]:
    return [line.strip() for line in text.replace(",", "\n").splitlines() if line.strip()]


class TopicForm(forms.ModelForm):
    add_subscribers = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4}),
        help_text="External ids to subscribe, one per line or comma-separated (existing recipients).",
    )
    remove_subscribers = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4}),
        help_text="External ids to unsubscribe, one per line or comma-separated.",
    )

    class Meta:
        model = Topic
        fields = ("key", "name", "description", "default_category")

    def clean_add_subscribers(self):
        ids = _ids(self.cleaned_data["add_subscribers"])
        known = set(Recipient.objects.filter(external_id__in=ids).values_list("external_id", flat=True))
        unknown = [eid for eid in ids if eid not in known]
        if unknown:
            raise forms.ValidationError(f"Unknown recipients: {', '.join(unknown[:20])}"
                                        + (f" and {len(unknown) - 20} more" if len(unknown) > 20 else ""))
        return ids

    def clean_remove_subscribers(self):
        return _ids(self.cleaned_data["remove_subscribers"])


@admin.register(Topic)
class TopicAdmin(admin.ModelAdmin):
    form = TopicForm
    list_display = ("key", "name", "default_category", "subscriber_count", "updated_at")
    search_fields = ("key", "name", "description")
    ordering = ("key",)
    prepopulated_fields = {"key": ("name",)}
    readonly_fields = ("subscribers", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("key", "name", "description", "default_category")}),
        ("Subscribers", {"fields": ("subscribers", "add_subscribers", "remove_subscribers")}),
        ("Times", {"fields": ("created_at", "updated_at")}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("default_category").annotate(
            _subscribers=Count("subscriptions"))

    @admin.display(description="subscribers", ordering="_subscribers")
    def subscriber_count(self, obj):
        return obj._subscribers

    @admin.display(description="subscribers")
    def subscribers(self, obj):
        if obj.pk is None:
            return "—"
        url = reverse("admin:broadcasts_subscription_changelist") + "?" + urlencode({"topic__id__exact": obj.pk})
        return format_html('{} — <a href="{}">list, search, remove</a>', obj.subscriptions.count(), url)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        add, remove = form.cleaned_data.get("add_subscribers"), form.cleaned_data.get("remove_subscribers")
        if add:
            try:
                result = topic_subscribers_add(topic=obj, items=add)
            except AudienceRejected as exc:  # a recipient deleted since the form was checked
                messages.error(request, f"Subscribers not added: {exc.errors}")
            else:
                messages.success(request, f"{result.added} subscribed ({result.already} already were).")
        if remove:
            result = topic_subscribers_remove(topic=obj, external_ids=remove)
            messages.success(request, f"{result.removed} unsubscribed.")


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ("recipient", "topic", "created_at")
    list_filter = ("topic",)
    search_fields = ("recipient__external_id", "recipient__name", "topic__key")
    list_select_related = ("recipient", "topic")
    autocomplete_fields = ("recipient", "topic")
    ordering = ("-id",)
    show_full_result_count = False
    readonly_fields = ("created_at",)


class TopicSubscriptionInline(admin.TabularInline):
    """The recipient's topics, on the recipient's page; unsubscribe by deleting the row."""

    model = Subscription
    extra = 0
    fields = ("topic", "created_at")
    readonly_fields = ("topic", "created_at")
    verbose_name = "topic subscription"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


_recipient_admin = type(admin.site._registry[Recipient])


def _managed_by_broadcast(obj) -> bool:
    return obj is not None and obj.name.startswith(BEAT_PREFIX)


class _BeatEntryGuard:
    """Beat entries of broadcasts are owned by notifyhub: read-only in Periodic Tasks (edit the
    broadcast instead), and not deletable there (delete or cancel the broadcast)."""

    def has_change_permission(self, request, obj=None):
        return not _managed_by_broadcast(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return not _managed_by_broadcast(obj) and super().has_delete_permission(request, obj)


_beat_admin = admin.site._registry.get(PeriodicTask)
if _beat_admin is not None and not isinstance(_beat_admin, _BeatEntryGuard):
    _guarded = type("PeriodicTaskAdmin", (_BeatEntryGuard, type(_beat_admin)), {})
    admin.site.unregister(PeriodicTask)
    admin.site.register(PeriodicTask, _guarded)

if TopicSubscriptionInline not in _recipient_admin.inlines:
    _recipient_admin.inlines = (*_recipient_admin.inlines, TopicSubscriptionInline)


class SegmentForm(forms.ModelForm):
    class Meta:
        model = Segment
        fields = ("key", "name", "description", "definition")
        widgets = {"definition": forms.Textarea(attrs={"rows": 14, "cols": 90, "style": "font-family: monospace"})}

    def clean_definition(self):
        definition = self.cleaned_data["definition"]
        try:
            segment_validate(definition=definition)
        except SegmentInvalid as exc:
            raise forms.ValidationError([f"{path}: {'; '.join(msgs)}" for path, msgs in exc.errors.items()]) from None
        return definition


@admin.register(Segment)
class SegmentAdmin(admin.ModelAdmin):
    form = SegmentForm
    list_display = ("key", "name", "updated_at")
    search_fields = ("key", "name", "description")
    ordering = ("key",)
    prepopulated_fields = {"key": ("name",)}
    readonly_fields = ("audience_preview", "created_at", "updated_at")
    fields = ("key", "name", "description", "definition", "audience_preview", "created_at", "updated_at")

    @admin.display(description="audience size preview")
    def audience_preview(self, obj):
        if obj.pk is None:
            return "Save to see the audience size and ten sample recipients."
        count, sample = segment_preview(segment=obj)
        rows = format_html_join(
            "", '<tr><td><a href="{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>',
            ((reverse("admin:preferences_recipient_change", args=[r.pk]), r.external_id, r.name, r.locale,
              r.timezone) for r in sample),
        )
        return format_html(
            '<p class="audience-size"><strong>{}</strong> recipient(s) match now.</p>'
            "<table><thead><tr><th>external id</th><th>name</th><th>locale</th><th>timezone</th></tr></thead>"
            "<tbody>{}</tbody></table>", count, rows)


class ImportForm(forms.ModelForm):
    class Meta:
        model = Import
        fields = ("file",)
        help_texts = {"file": "CSV with a header row: external_id (required), name, email, phone (E.164), locale, "
                              "timezone, data.<key>, topics (;-separated keys). UTF-8 (BOM or not) or GB18030; "
                              "comma or tab separated."}


# Polls the status endpoint while the import is queued or running; the bar and counts update in place.
PROGRESS_SCRIPT = mark_safe("""<script>
(function () {
  var box = document.getElementById("import-progress");
  if (!box) { return; }
  function poll() {
    fetch(box.dataset.url, {credentials: "same-origin"}).then(function (r) { return r.json(); }).then(function (s) {
      box.querySelector("progress").value = s.progress;
      box.querySelector(".import-percent").textContent = s.progress + "%";
      box.querySelector(".import-counts").textContent = s.status + ": " + s.rows_read + " rows read, " +
        s.created + " created, " + s.updated + " updated, " + s.rejected + " rejected";
      if (s.status === "queued" || s.status === "running") { setTimeout(poll, 1000); }
      else { window.location.reload(); }
    }).catch(function () { setTimeout(poll, 3000); });
  }
  if (box.dataset.active === "1") { setTimeout(poll, 1000); }
})();
</script>""")


def _status(record: Import) -> dict:
    return {"id": record.pk, "status": record.status, "progress": record.progress_percent,
            "rows_read": record.rows_read, "created": record.created, "updated": record.updated,
            "rejected": record.rejected, "error": record.error}


@admin.register(Import)
class ImportAdmin(admin.ModelAdmin):
    form = ImportForm
    list_display = ("id", "original_name", "status", "progress", "rows_read", "created", "updated", "rejected",
                    "created_at")
    list_filter = ("status",)
    search_fields = ("original_name",)
    ordering = ("-created_at",)
    readonly_fields = ("original_name", "progress_bar", "status", "rows_read", "created", "updated", "rejected",
                       "encoding", "delimiter", "error", "rejects", "created_at", "started_at", "finished_at")

    def get_fields(self, request, obj=None):
        return ("file",) if obj is None else self.readonly_fields

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def get_urls(self):
        return [
            path("<int:pk>/status/", self.admin_site.admin_view(self.status_view), name="broadcasts_import_status"),
            path("<int:pk>/rejects/", self.admin_site.admin_view(self.rejects_view),
                 name="broadcasts_import_rejects"),
            *super().get_urls(),
        ]

    def status_view(self, request, pk):
        if not self.has_view_permission(request):
            raise Http404
        return JsonResponse(_status(get_object_or_404(Import, pk=pk)))

    def rejects_view(self, request, pk):
        record = get_object_or_404(Import, pk=pk)
        if not self.has_view_permission(request, record) or not record.rejects_file:
            raise Http404
        return FileResponse(record.rejects_file.open("rb"), as_attachment=True,
                            filename=f"import-{record.pk}-rejects.csv", content_type="text/csv")

    def save_model(self, request, obj, form, change):
        upload = form.cleaned_data["file"]
        obj.pk = import_create(upload=upload, original_name=upload.name).pk

    def response_add(self, request, obj, post_url_continue=None):
        messages.success(request, "Import queued; this page shows its progress.")
        return redirect(reverse("admin:broadcasts_import_change", args=[obj.pk]))

    @admin.display(description="progress")
    def progress(self, obj):
        return f"{obj.progress_percent}%"

    @admin.display(description="progress")
    def progress_bar(self, obj):
        active = obj.status in (ImportStatus.QUEUED, ImportStatus.RUNNING)
        state = _status(obj)
        return format_html(
            '<div id="import-progress" data-url="{}" data-active="{}">'
            '<progress max="100" value="{}" style="width: 30em; height: 1.4em"></progress> '
            '<span class="import-percent">{}%</span><br><span class="import-counts">{}: {} rows read, {} created, '
            "{} updated, {} rejected</span></div>{}",
            reverse("admin:broadcasts_import_status", args=[obj.pk]), "1" if active else "0", state["progress"],
            state["progress"], obj.status, obj.rows_read, obj.created, obj.updated, obj.rejected, PROGRESS_SCRIPT)

    @admin.display(description="rejected rows")
    def rejects(self, obj):
        if not obj.rejects_file:
            return "—"
        return format_html('<a href="{}">Download the {} rejected row(s) with reasons (CSV)</a>',
                           reverse("admin:broadcasts_import_rejects", args=[obj.pk]), obj.rejected)


class BroadcastForm(forms.ModelForm):
    confirm_all = forms.BooleanField(required=False, label="Yes, send to every recipient",
                                     help_text="Required when 'all recipients' is ticked.")

    class Meta:
        model = Broadcast
        fields = ("name", "template", "topics", "segment", "all_recipients", "confirm_all", "context", "channels",
                  "priority", "schedule", "send_at", "cron", "interval_every", "interval_unit", "timezone",
                  "starts_at", "ends_at")

    def clean(self):
        data = super().clean()
        if data.get("all_recipients") and not data.get("confirm_all"):
            self.add_error("confirm_all", "Confirm that this broadcast goes to every recipient.")
        return data


class BroadcastRunInline(admin.TabularInline):
    model = BroadcastRun
    extra = 0
    can_delete = False
    fields = ("started_at", "recipient_count", "message_link")
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    @admin.display(description="message")
    def message_link(self, obj):
        if obj.message_id is None:
            return "—"
        return format_html('<a href="{}">{}</a>', reverse("admin:messaging_message_change", args=[obj.message_id]),
                           obj.message_id)


@admin.register(Broadcast)
class BroadcastAdmin(admin.ModelAdmin):
    form = BroadcastForm
    list_display = ("name", "template", "schedule", "status", "updated_at")
    list_filter = ("status", "schedule")
    search_fields = ("name",)
    autocomplete_fields = ("topics",)
    readonly_fields = ("status", "audience_size", "periodic_task")
    inlines = (BroadcastRunInline,)
    actions = ("schedule_selected", "pause_selected", "resume_selected", "cancel_selected")

    @admin.display(description="audience size now")
    def audience_size(self, obj):
        return "—" if obj.pk is None else broadcast_audience(broadcast=obj).order_by().count()

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        broadcast = form.instance
        if broadcast.status in (BroadcastStatus.SCHEDULED, BroadcastStatus.PAUSED) and \
                broadcast.schedule != "now":
            try:  # an edit of a scheduled broadcast changes its beat entry
                broadcast_schedule(broadcast=broadcast)
                if broadcast.status == BroadcastStatus.PAUSED:
                    broadcast_pause(broadcast=broadcast)
            except ValidationError as exc:
                messages.error(request, f"Not rescheduled: {'; '.join(exc.messages)}")

    def delete_model(self, request, obj):
        broadcast_delete(broadcast=obj)

    def delete_queryset(self, request, queryset):
        for broadcast in queryset:
            broadcast_delete(broadcast=broadcast)

    def _each(self, request, queryset, service, verb):
        done = 0
        for broadcast in queryset:
            try:
                service(broadcast=broadcast)
                done += 1
            except ValidationError as exc:
                messages.error(request, f"{broadcast}: {'; '.join(exc.messages)}")
        if done:
            messages.success(request, f"{done} broadcast(s) {verb}.")

    @admin.action(description="Schedule (or send now) selected broadcasts", permissions=("change",))
    def schedule_selected(self, request, queryset):
        self._each(request, queryset, broadcast_schedule, "scheduled")

    @admin.action(description="Pause selected broadcasts", permissions=("change",))
    def pause_selected(self, request, queryset):
        self._each(request, queryset, broadcast_pause, "paused")

    @admin.action(description="Resume selected broadcasts", permissions=("change",))
    def resume_selected(self, request, queryset):
        self._each(request, queryset, broadcast_resume, "resumed")

    @admin.action(description="Cancel selected broadcasts", permissions=("change",))
    def cancel_selected(self, request, queryset):
        self._each(request, queryset, broadcast_cancel, "cancelled")
