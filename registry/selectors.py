"""Reads of registry data, and the bridge from models to the Django-free connection configs."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db.models import QuerySet

from netops.secrets import is_secret_reference, resolve_secret
from registry.connections import ServerConfig
from registry.models import LLMModel, MCPServer, ServerStatus, Tool, ToolReview


def llm_model_default() -> LLMModel | None:
    """The default model, or None when no model is registered."""
    return LLMModel.objects.filter(is_default=True).first()


def mcp_servers_usable() -> QuerySet[MCPServer]:
    """Servers whose tools the catalog offers: enabled and settled healthy (or degraded: reachable,
    its tool list cut at a limit, and what it did list is offered)."""
    return MCPServer.objects.filter(enabled=True, status__in=[ServerStatus.HEALTHY, ServerStatus.DEGRADED])


def tools_offered(*, servers: QuerySet[MCPServer]) -> dict[UUID, list[dict[str, Any]]]:
    """The tools the catalog offers from ``servers``, per server id: accepted, enabled, still listed.

    Each entry is the accepted definition plus ``public_name`` and the admin's ``access``; held,
    disabled, vanished and unsupported tools are left out, so no face can offer them.
    """
    rows = (
        Tool.objects.filter(
            server__in=servers, review=ToolReview.ACTIVE, enabled=True, present=True, unsupported=""
        )
        .order_by("server_id", "position", "name")
        .only(*_OFFERED_FIELDS)
    )
    offered: dict[UUID, list[dict[str, Any]]] = {}
    for row in rows:
        offered.setdefault(row.server_id, []).append(
            {**row.definition(), "public_name": row.public_name, "access": row.access}
        )
    return offered


_OFFERED_FIELDS = (
    "server_id",
    "name",
    "public_name",
    "title",
    "description",
    "input_schema",
    "output_schema",
    "annotations",
    "access",
)


def mcp_server_tools(*, server: MCPServer) -> QuerySet[Tool]:
    """Every Tool row of ``server`` (held, disabled and vanished ones too), by public name."""
    return Tool.objects.filter(server=server).select_related("reviewed_by").order_by("public_name")


def mcp_server_tool_definitions(*, server: MCPServer) -> list[dict[str, Any]]:
    """The accepted definitions of the tools ``server`` still lists (held new tools have none)."""
    rows = Tool.objects.filter(server=server, present=True).exclude(review=ToolReview.HELD_NEW)
    return [row.definition() for row in rows.order_by("public_name")]


def tools_held() -> QuerySet[Tool]:
    """Tools of every server that wait for an admin's review, oldest hold first."""
    return (
        Tool.objects.exclude(review=ToolReview.ACTIVE)
        .filter(present=True)
        .select_related("server", "reviewed_by")
        .order_by("held_at", "public_name")
    )


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
