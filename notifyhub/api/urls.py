from django.urls import include, path
from rest_framework.routers import SimpleRouter

from notifyhub.api.views import manage, messages, recipients

router = SimpleRouter(trailing_slash=False)
router.register("templates", manage.TemplateViewSet, basename="template")
router.register("categories", manage.CategoryViewSet, basename="category")
router.register("channels", manage.ChannelConfigViewSet, basename="channel")

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
    path("", include(router.urls)),
]
