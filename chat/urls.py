"""Page routes of the chat app."""

from __future__ import annotations

from django.urls import path

from chat import views

app_name = "chat"

urlpatterns = [
    path("", views.index, name="index"),
    path("new/", views.new, name="new"),
    path("<uuid:pk>/", views.conversation, name="conversation"),
    path("<uuid:pk>/rename/", views.rename, name="rename"),
    path("<uuid:pk>/delete/", views.delete, name="delete"),
    path("<uuid:pk>/settings/", views.configure, name="settings"),
    path("<uuid:pk>/export.<str:fmt>", views.export, name="export"),
    path("<uuid:pk>/calls/<int:call_pk>/content/<int:index>/", views.tool_content, name="tool_content"),
]
