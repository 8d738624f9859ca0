"""Websocket URL routes of every app, collected for ``netops.asgi``."""

from __future__ import annotations

from typing import Any

from chat.routing import websocket_urlpatterns as chat_routes
from netboxrw.routing import websocket_urlpatterns as change_routes

websocket_urlpatterns: list[Any] = [*chat_routes, *change_routes]
