"""The websocket origin check: a socket is opened only from a page netops itself served.

Channels' ``AllowedHostsOriginValidator`` compares only the origin's *host* with ``ALLOWED_HOSTS``,
so a page on ``http://127.0.0.1:9999`` (any other program on the same machine) or on plain
``http://`` when netops is served over HTTPS could open a socket with the user's cookies. Here an
``Origin`` is accepted when it is exactly the origin the request was made to:

* same scheme — ``ws`` <-> ``http``, ``wss`` <-> ``https``; behind a trusted proxy the scheme is the
  one it forwarded (:mod:`netops.client_address` rewrites ``scope["scheme"]``);
* same host and port as the request's ``Host`` header (default ports made explicit), and that host
  allowed by ``ALLOWED_HOSTS``;

or when it is listed in ``CSRF_TRUSTED_ORIGINS`` (exactly, or ``https://*.example.com`` for its
subdomains, as Django's CSRF check reads that setting). Everything else — no ``Origin``, ``null``,
another port, another scheme, another host — is refused before the consumer runs (daphne answers
the handshake with 403).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}
Origin = tuple[str, str, int]  # scheme, host (lower case, IPv6 without brackets), port


def parse_origin(value: str) -> Origin | None:
    """``scheme://host[:port]`` as a tuple with the port made explicit; None if it is not one."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username is not None:
        return None
    return scheme, parts.hostname.lower(), port or DEFAULT_PORTS[scheme]


def request_origin(scope: dict[str, Any], host_header: str) -> Origin | None:
    """The origin the request was made to: its scheme (as http/https) and its ``Host`` header."""
    scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
    domain, port = split_domain_port(host_header)
    if not domain:
        return None
    try:
        number = int(port) if port else DEFAULT_PORTS[scheme]
    except ValueError:
        return None
    return scheme, domain.strip("[]").lower(), number


def _trusted(origin: Origin, trusted: list[str]) -> bool:
    """Whether ``origin`` is one of ``CSRF_TRUSTED_ORIGINS`` (``*.`` entries cover subdomains)."""
    scheme, host, port = origin
    for entry in trusted:
        wildcard = "://*." in entry
        parsed = parse_origin(entry.replace("://*.", "://", 1) if wildcard else entry)
        if parsed is None or parsed[0] != scheme or parsed[2] != port:
            continue
        if host == parsed[1] or (wildcard and host.endswith("." + parsed[1])):
            return True
    return False


def origin_allowed(scope: dict[str, Any]) -> bool:
    """The rule of the module docstring, for a websocket scope."""
    headers = {key.lower(): value for key, value in scope.get("headers") or []}
    origin = parse_origin(headers.get(b"origin", b"").decode("latin-1"))
    if origin is None:
        return False
    if _trusted(origin, list(settings.CSRF_TRUSTED_ORIGINS)):
        return True
    host_header = headers.get(b"host", b"").decode("latin-1")
    served = request_origin(scope, host_header)
    if served is None or origin != served:
        return False
    domain, _ = split_domain_port(host_header)
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = ["localhost", "127.0.0.1", "[::1]"]
    return validate_host(domain, allowed)


class SameOriginValidator:
    """ASGI middleware for websockets: :func:`origin_allowed` or the handshake is refused."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        if scope["type"] == "websocket" and not origin_allowed(scope):
            denier = WebsocketDenier()
            return await denier(scope, receive, send)
        return await self.app(scope, receive, send)
