"""Registry API routes (mounted at ``/api/`` and at the plugin alias ``/api/plugins/ai-ops/``)."""

from __future__ import annotations

from rest_framework.routers import DefaultRouter

from registry.api import views

app_name = "registry-api"

router = DefaultRouter(trailing_slash=True)
router.register("llm-models", views.LLMModelViewSet, basename="llmmodel")
router.register("mcp-servers", views.MCPServerViewSet, basename="mcpserver")
router.register("mcp-tools", views.ToolViewSet, basename="mcptool")

urlpatterns = router.urls
