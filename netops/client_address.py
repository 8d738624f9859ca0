"""Who is really calling: the client address and scheme, with proxy headers trusted only from proxies.

Any client can send ``X-Forwarded-For: 127.0.0.1``. daphne's ``--proxy-headers`` believes it from
every peer, which unlocked ``/metrics`` (allowed by network) for anyone. So netops starts daphne
*without* ``--proxy-headers`` and decides here, once per connection, in an ASGI middleware that
wraps the whole application (HTTP, ``/mcp`` and websockets):

* the direct peer (``scope["client"]``) is not in ``TRUSTED_PROXIES`` (the default: none is) ->
  the peer is the client, every ``X-Forwarded-*`` / ``X-Real-IP`` header is ignored;
* the peer is a trusted proxy -> ``X-Forwarded-For`` is walked right to left, skipping addresses
  that are themselves trusted proxies; the first other address is the client (an address left of
  it was written by the client and proves nothing). Without ``X-Forwarded-For``, ``X-Real-IP``.
  ``X-Forwarded-Proto`` (``https``/``http``) sets the scheme (``wss``/``ws`` for websockets).

The middleware rewrites ``scope["client"]`` and ``scope["scheme"]``, so everything downstream —
Django's ``REMOTE_ADDR`` and ``request.is_secure()``, the ``/metrics`` allowlist, log lines, the
websocket origin check — sees one answer. The peer's own address stays in ``scope["netops_peer"]``.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

PEER_KEY = "netops_peer"


@functools.lru_cache(maxsize=8)
def parse_networks(cidrs: tuple[str, ...], setting: str) -> tuple[IPNetwork, ...]:
    """CIDRs (or bare addresses) as networks; a typo is a configuration error naming the setting."""
    try:
        return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs if cidr.strip())
    except ValueError as exc:
        raise ImproperlyConfigured(f"{setting}: {exc}") from None


def parse_address(text: str) -> IPAddress | None:
    """An IP literal (IPv4-mapped IPv6 as IPv4, ``[v6]`` and ``v4:port`` forms accepted), else None."""
    text = text.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def in_networks(address: str, networks: Iterable[IPNetwork]) -> bool:
    ip = parse_address(address)
    return ip is not None and any(ip.version == net.version and ip in net for net in networks)


def trusted_proxies() -> tuple[IPNetwork, ...]:
    return parse_networks(tuple(settings.TRUSTED_PROXIES), "TRUSTED_PROXIES")


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """All values of one header joined by commas (as HTTP allows), None when absent."""
    values = [value.decode("latin-1") for key, value in headers if key.lower() == name]
    return ",".join(values) if values else None


def client_address(peer: str, headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The client's address for a connection from ``peer`` carrying ``headers`` (see the module)."""
    proxies = trusted_proxies()
    if not proxies or not in_networks(peer, proxies):
        return peer
    headers = list(headers)
    forwarded_for = _header(headers, b"x-forwarded-for")
    if forwarded_for is not None:
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
        for hop in reversed(hops):
            ip = parse_address(hop)
            if ip is None:  # garbage in the chain: nothing left of it can be believed
                return peer
            if not in_networks(str(ip), proxies):
                return str(ip)
        return str(parse_address(hops[0])) if hops else peer  # every hop a proxy: the farthest
    real_ip = parse_address(_header(headers, b"x-real-ip") or "")
    return str(real_ip) if real_ip is not None else peer


def forwarded_scheme(peer: str, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """``https`` or ``http`` as a trusted proxy says (``X-Forwarded-Proto``), else None."""
    proxies = trusted_proxies()
    if not proxies or not in_networks(peer, proxies):
        return None
    proto = (_header(headers, b"x-forwarded-proto") or "").split(",")[0].strip().lower()
    return proto if proto in ("http", "https") else None


class ClientAddressMiddleware:
    """ASGI middleware: ``scope["client"]`` and ``scope["scheme"]`` as :func:`client_address` and
    :func:`forwarded_scheme` decide, for HTTP and websocket connections."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        peer = str(client[0]) if client else ""
        headers = scope.get("headers") or []
        scope = {**scope, PEER_KEY: peer}
        address = client_address(peer, headers) if peer else peer
        if client and address != peer:
            scope["client"] = (address, 0)
        scheme = forwarded_scheme(peer, headers) if peer else None
        if scheme is not None:
            secure = scheme == "https"
            if scope["type"] == "websocket":
                scope["scheme"] = "wss" if secure else "ws"
            else:
                scope["scheme"] = scheme
        await self.app(scope, receive, send)
