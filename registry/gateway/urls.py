"""Tool gateway routes (mounted at ``/api/mcp/``)."""

from __future__ import annotations

from django.urls import path

from registry.gateway import views

urlpatterns = [
    path("tools", views.tools, name="gateway-tools"),
    path("tools/<str:name>", views.call, name="gateway-call"),
]
