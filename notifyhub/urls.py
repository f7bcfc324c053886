from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from notifyhub import health
from notifyhub.api.views.hooks import anymail_patterns, channel_callback
from notifyhub.docs_assets import redoc_bundle

admin.site.site_header = "notifyhub"
admin.site.site_title = "notifyhub admin"
admin.site.index_title = "Operations"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("notifyhub.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("api/redoc/redoc.standalone.js", redoc_bundle, name="redoc-bundle"),
    path("hooks/channels/<str:name>/", channel_callback, name="channel-callback"),
    path("hooks/channels/<str:name>/<str:token>/", channel_callback, name="channel-callback-token"),
    path("hooks/anymail/", include((anymail_patterns(), "anymail"))),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
]
