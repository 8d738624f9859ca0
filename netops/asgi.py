"""ASGI entry point: HTTP through Django, websockets through Channels with origin and session checks.

Every connection first passes :class:`netops.client_address.ClientAddressMiddleware`: proxy headers
count only from ``TRUSTED_PROXIES``, so daphne runs without ``--proxy-headers`` (which would believe
them from anyone). Websockets then pass :class:`netops.websocket_origin.SameOriginValidator`: the
page's origin must be the one the socket was opened to (scheme, host and port).

``/mcp`` (and anything under ``/mcp/``) is netops' own MCP server (``registry.mcp_endpoint``): the
MCP SDK's transport is an ASGI app, so it is mounted beside Django rather than behind a view.

daphne serves this application. Static files are served by Django's ASGI static handler so the
embedded-defaults start needs no extra web server; behind a reverse proxy, serve ``STATIC_ROOT``
from the proxy instead.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "netops.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (Django must be set up first)
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from starlette.types import Receive, Scope, Send  # noqa: E402

from netops.client_address import ClientAddressMiddleware  # noqa: E402
from netops.routing import websocket_urlpatterns  # noqa: E402
from netops.websocket_origin import SameOriginValidator  # noqa: E402
from registry.mcp_endpoint import is_mcp_path, mcp_asgi_app  # noqa: E402

# Typed Any: django-stubs and Starlette spell the same ASGI callables with different mapping types.
django_http_app: Any = ASGIStaticFilesHandler(django_asgi_app)
mcp_app = mcp_asgi_app()


async def http_app(scope: Scope, receive: Receive, send: Send) -> None:
    """``/mcp`` and ``/mcp/...`` to the MCP endpoint, everything else to Django."""
    if is_mcp_path(scope["path"]):
        await mcp_app(scope, receive, send)
    else:
        await django_http_app(scope, receive, send)


# The client address and scheme are settled first (proxy headers only from TRUSTED_PROXIES), so
# REMOTE_ADDR, the /metrics allowlist, logs and the websocket origin check all see the same answer.
application = ClientAddressMiddleware(
    ProtocolTypeRouter(
        {
            "http": http_app,
            "websocket": SameOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
        }
    )
)
