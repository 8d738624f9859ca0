"""Websocket routes of the change queue."""

from __future__ import annotations

from django.urls import path

from netboxrw.consumers import QueueConsumer

websocket_urlpatterns = [path("ws/changes/", QueueConsumer.as_asgi())]
