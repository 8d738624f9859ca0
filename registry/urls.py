"""Page routes of the registry."""

from __future__ import annotations

from django.urls import path

from registry import key_views, views

app_name = "registry"

urlpatterns = [
    path("catalog/", views.catalog, name="catalog"),
    path("catalog/servers/<uuid:pk>/check/", views.server_check, name="server-check"),
    path("catalog/servers/<uuid:pk>/tools/", views.server_tools, name="server-tools"),
    path("catalog/tools/<uuid:pk>/enabled/", views.tool_enabled, name="tool-enabled"),
    path("catalog/tools/<uuid:pk>/access/", views.tool_access, name="tool-access"),
    path("catalog/tools/<uuid:pk>/accept/", views.tool_accept, name="tool-accept"),
    path("catalog/tools/<uuid:pk>/keep-held/", views.tool_keep_held, name="tool-keep-held"),
    path("keys/", key_views.my_keys, name="keys"),
    path("keys/<str:prefix>/revoke/", key_views.revoke, name="key-revoke"),
]
