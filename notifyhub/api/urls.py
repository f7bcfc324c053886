from django.urls import include, path
from rest_framework.routers import SimpleRouter

from notifyhub.api.views import broadcasts, manage, messages, recipients

router = SimpleRouter(trailing_slash=False)
router.register("templates", manage.TemplateViewSet, basename="template")
router.register("categories", manage.CategoryViewSet, basename="category")
router.register("channels", manage.ChannelConfigViewSet, basename="channel")
router.register("topics", broadcasts.TopicViewSet, basename="topic")
router.register("segments", broadcasts.SegmentViewSet, basename="segment")
router.register("broadcasts", broadcasts.BroadcastViewSet, basename="broadcast")

app_name = "api"
urlpatterns = [
    path("messages", messages.MessageListCreateView.as_view(), name="messages"),
    path("messages/<uuid:pk>", messages.MessageDetailView.as_view(), name="message-detail"),
    path("messages/<uuid:pk>/deliveries", messages.MessageDeliveriesView.as_view(), name="message-deliveries"),
    path("messages/<uuid:pk>/cancel", messages.MessageCancelView.as_view(), name="message-cancel"),
    path("recipients", recipients.RecipientListView.as_view(), name="recipients"),
    path("recipients/<str:external_id>", recipients.RecipientDetailView.as_view(), name="recipient-detail"),
    path("recipients/<str:external_id>/contact-points", recipients.RecipientContactPointsView.as_view(),
         name="recipient-contact-points"),
    path("recipients/<str:external_id>/contact-points/<int:pk>", recipients.RecipientContactPointDetailView.as_view(),
         name="recipient-contact-point"),
    path("recipients/<str:external_id>/preferences", recipients.RecipientPreferencesView.as_view(),
         name="recipient-preferences"),
    path("topics/<str:key>/subscribers", broadcasts.TopicSubscribersView.as_view(), name="topic-subscribers"),
    path("topics/<str:key>/subscribers/remove", broadcasts.TopicSubscribersRemoveView.as_view(),
         name="topic-subscribers-remove"),
    path("segments/<str:key>/preview", broadcasts.SegmentPreviewView.as_view(), name="segment-preview"),
    path("imports", broadcasts.ImportListCreateView.as_view(), name="imports"),
    path("imports/<int:pk>", broadcasts.ImportDetailView.as_view(), name="import-detail"),
    path("imports/<int:pk>/rejects", broadcasts.ImportRejectsView.as_view(), name="import-rejects"),
    path("broadcasts/<int:pk>/schedule", broadcasts.BroadcastScheduleView.as_view(), name="broadcast-schedule"),
    path("broadcasts/<int:pk>/pause", broadcasts.BroadcastPauseView.as_view(), name="broadcast-pause"),
    path("broadcasts/<int:pk>/resume", broadcasts.BroadcastResumeView.as_view(), name="broadcast-resume"),
    path("broadcasts/<int:pk>/cancel", broadcasts.BroadcastCancelView.as_view(), name="broadcast-cancel"),
    path("broadcasts/<int:pk>/test", broadcasts.BroadcastTestView.as_view(), name="broadcast-test"),
    path("broadcasts/<int:pk>/runs", broadcasts.BroadcastRunsView.as_view(), name="broadcast-runs"),
    path("", include(router.urls)),
]
