"""Top-level URL configuration."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from chat.api import views as chat_api
from netops import health, metrics, views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("registry/", include("registry.urls")),
    path("chat/", include("chat.urls")),
    path("changes/", include("netboxrw.urls")),
    path("api/mcp/", include("registry.gateway.urls")),
    path("api/", include("registry.api.urls")),
    path("api/", include("chat.api.urls")),
    path("api/", include("netboxrw.api.urls")),
    # The reference document's chat path.
    path("plugins/ai-ops/api/chat/", chat_api.chat, name="plugin-chat-api"),
    # Aliases for clients written against the AI-ops plugin's paths (reference document).
    path("api/plugins/ai-ops/", include(("registry.api.urls", "registry-api"), namespace="plugin-api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", views.api_docs, name="api-docs"),
]
