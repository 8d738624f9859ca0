"""Reads of registry data, and the bridge from models to the Django-free connection configs."""

from __future__ import annotations

from django.db.models import QuerySet

from netops.secrets import is_secret_reference, resolve_secret
from registry.connections import ServerConfig
from registry.models import LLMModel, MCPServer, ServerStatus


def llm_model_default() -> LLMModel | None:
    """The default model, or None when no model is registered."""
    return LLMModel.objects.filter(is_default=True).first()


def mcp_servers_usable() -> QuerySet[MCPServer]:
    """Servers whose tools the catalog offers: enabled and settled healthy."""
    return MCPServer.objects.filter(enabled=True, status=ServerStatus.HEALTHY)


def mcp_server_config(server: MCPServer) -> ServerConfig:
    """Snapshot ``server`` into a :class:`ServerConfig`, resolving its secret references now.

    Raises :class:`netops.secrets.SecretError` when a reference cannot be resolved; callers turn
    that into an unhealthy check or a tool error, naming the reference but never a value.
    """
    headers: dict[str, str] = {}
    if server.auth_secret_ref:
        secret = resolve_secret(server.auth_secret_ref)
        headers[server.auth_header or "Authorization"] = f"{server.auth_scheme} {secret}".strip()
    env = {
        name: resolve_secret(value) if is_secret_reference(value) else value
        for name, value in (server.env or {}).items()
    }
    return ServerConfig(
        name=server.name,
        protocol=server.protocol,  # type: ignore[arg-type]
        url=server.url,
        health_check=server.health_check,
        command=server.command,
        args=tuple(server.args or ()),
        env=env,
        headers=headers,
        connect_timeout=server.connect_timeout,
        call_timeout=server.call_timeout,
    )
