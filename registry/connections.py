"""Talking to tool servers: MCP over Streamable HTTP, legacy SSE and stdio, and REST tool APIs.

This module imports no Django. It works on :class:`ServerConfig`, a frozen snapshot with secrets
already resolved, so it can run in any event loop (daphne's, a management command's, a benchmark)
and be tested alone. Every public coroutine is bounded by the timeout in the config.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict
from urllib.parse import urljoin, urlsplit

import httpx
import httpx2
import mcp.types as mcp_types
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

Protocol = Literal["http", "sse", "stdio", "rest"]

# Limits on how much of a remote tool list is kept: a misbehaving server must not fill the database.
MAX_TOOLS_PER_SERVER = 500
MAX_LIST_PAGES = 20


class ToolDefinition(TypedDict):
    """A tool as cached in the registry, in MCP's wire vocabulary (camelCase annotation hints)."""

    name: str
    title: str | None
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    annotations: dict[str, Any]


@dataclass(frozen=True)
class ServerConfig:
    """Everything needed to reach one server; ``headers`` and ``env`` hold resolved secrets."""

    name: str
    protocol: Protocol
    url: str = ""
    health_check: str = ""
    command: str = ""
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict, repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    connect_timeout: float = 10.0
    call_timeout: float = 60.0

    @property
    def endpoint(self) -> str:
        """The URL the protocol talks to, with the conventional path added to a bare origin."""
        if self.protocol == "stdio":
            return ""
        parts = urlsplit(self.url)
        if parts.path in ("", "/"):
            default = {"http": "/mcp", "sse": "/sse", "rest": "/api/mcp"}[self.protocol]
            return self.url.rstrip("/") + default
        return self.url

    @property
    def health_url(self) -> str | None:
        """The probe URL on the server's origin, or None when no probe applies."""
        if self.protocol not in ("http", "rest") or not self.health_check:
            return None
        return urljoin(self.url, self.health_check)


@dataclass
class ToolCallOutcome:
    """The typed result of one tool call, whatever the transport."""

    content: list[dict[str, Any]]
    structured_content: Any
    is_error: bool
    duration_ms: float
    error: str | None = None
    status: int | None = None  # for errors: the HTTP status a REST face should answer with

    def text(self) -> str:
        """The textual content joined, for logs and for the LLM."""
        if self.error and not self.content:
            return self.error
        return "\n".join(str(c.get("text", "")) for c in self.content if c.get("type") == "text")


class ServerUnreachable(Exception):
    """The server could not be reached or answered with something other than the protocol."""


def _annotations(tool: mcp_types.Tool) -> dict[str, Any]:
    if tool.annotations is None:
        return {}
    return tool.annotations.model_dump(by_alias=True, exclude_none=True)


def _definition(tool: mcp_types.Tool) -> ToolDefinition:
    return ToolDefinition(
        name=tool.name,
        title=tool.title,
        description=tool.description or "",
        input_schema=dict(tool.input_schema or {"type": "object", "properties": {}}),
        output_schema=dict(tool.output_schema) if tool.output_schema else None,
        annotations=_annotations(tool),
    )


@asynccontextmanager
async def open_client(config: ServerConfig) -> AsyncIterator[Client]:
    """Open an MCP session to ``config`` (not for ``rest``); the caller bounds it with a timeout."""
    transport: Any
    if config.protocol == "http":
        http_client = httpx2.AsyncClient(headers=config.headers, timeout=config.connect_timeout)
        transport = streamable_http_client(config.endpoint, http_client=http_client)
    elif config.protocol == "sse":
        transport = sse_client(
            config.endpoint, headers=config.headers, timeout=config.connect_timeout, sse_read_timeout=300.0
        )
    elif config.protocol == "stdio":
        transport = StdioServerParameters(
            command=config.command, args=list(config.args), env=config.env or None
        )
    else:
        raise ValueError(f"protocol {config.protocol!r} is not MCP")
    async with Client(transport, read_timeout_seconds=config.call_timeout) as client:
        yield client


async def list_tools(config: ServerConfig) -> list[ToolDefinition]:
    """Fetch the server's tool list (every page, within the limits above)."""
    if config.protocol == "rest":
        return await _rest_list_tools(config)
    tools: list[ToolDefinition] = []
    async with open_client(config) as client:
        cursor: str | None = None
        for _ in range(MAX_LIST_PAGES):
            page = await client.list_tools(cursor=cursor, cache_mode="refresh")
            tools += [_definition(t) for t in page.tools]
            cursor = page.next_cursor
            if not cursor or len(tools) >= MAX_TOOLS_PER_SERVER:
                break
    return tools[:MAX_TOOLS_PER_SERVER]


async def _get(config: ServerConfig, url: str, what: str) -> httpx.Response:
    """GET ``url`` with the server's headers; raise :class:`ServerUnreachable` unless it answers 2xx."""
    async with httpx.AsyncClient(timeout=config.connect_timeout, headers=config.headers) as http:
        try:
            response = await http.get(url)
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"{what} GET {url} failed: {type(exc).__name__}: {exc}") from None
    if not response.is_success:
        raise ServerUnreachable(f"{what} GET {url} answered {response.status_code}: {response.text[:200]}")
    return response


async def probe_health_path(config: ServerConfig) -> None:
    """GET the health path; raise :class:`ServerUnreachable` unless it answers 2xx."""
    if config.health_url is not None:
        await _get(config, config.health_url, "health probe")


async def call_tool(
    config: ServerConfig, name: str, arguments: dict[str, Any], *, timeout: float | None = None
) -> ToolCallOutcome:
    """Call one tool and return its typed result.

    Protocol-level tool errors come back as ``is_error=True``; transport failures raise
    (the catalog turns them into error results with a readable message).
    """
    started = time.perf_counter()
    if config.protocol == "rest":
        return await _rest_call_tool(config, name, arguments, timeout or config.call_timeout, started)
    async with open_client(config) as client:
        result = await client.call_tool(name, arguments, read_timeout_seconds=timeout or config.call_timeout)
    outcome = ToolCallOutcome(
        content=[c.model_dump(by_alias=True, exclude_none=True) for c in result.content],
        structured_content=result.structured_content,
        is_error=bool(result.is_error),
        duration_ms=(time.perf_counter() - started) * 1000,
    )
    if outcome.is_error:
        outcome.error = outcome.text() or f"{name} reported an error"
    return outcome


# --- REST tool API (reference/monitoring-tool-api.txt) -------------------------------------------


def _rest_tool(entry: dict[str, Any]) -> ToolDefinition:
    level = entry.get("permission_required", "read_only")
    schema = entry.get("input_schema") or entry.get("inputSchema") or {"type": "object", "properties": {}}
    return ToolDefinition(
        name=str(entry["name"]),
        title=entry.get("title"),
        description=str(entry.get("description") or ""),
        input_schema=schema,
        output_schema=None,
        annotations={"readOnlyHint": level == "read_only", "x-permission": level},
    )


async def _rest_list_tools(config: ServerConfig) -> list[ToolDefinition]:
    url = config.endpoint.rstrip("/") + "/tools"
    response = await _get(config, url, "tool list")
    try:
        entries = response.json()["tools"]
        return [_rest_tool(e) for e in entries if e.get("available", True)][:MAX_TOOLS_PER_SERVER]
    except (ValueError, KeyError, TypeError) as exc:
        raise ServerUnreachable(f"GET {url} did not return a tool list: {exc}") from None


async def _rest_call_tool(
    config: ServerConfig, name: str, arguments: dict[str, Any], timeout: float, started: float
) -> ToolCallOutcome:
    url = f"{config.endpoint.rstrip('/')}/tools/{name}"
    async with httpx.AsyncClient(timeout=timeout, headers=config.headers) as http:
        try:
            response = await http.post(url, json=arguments)
        except httpx.TimeoutException:
            raise TimeoutError(f"{name} on {config.name} did not answer within {timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"POST {url} failed: {type(exc).__name__}: {exc}") from None
    duration_ms = (time.perf_counter() - started) * 1000
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text[:500] or f"HTTP {response.status_code}"}
    if response.is_success and isinstance(body, dict) and body.get("success"):
        data = body.get("data")
        text = data if isinstance(data, str) else _json_text(data)
        return ToolCallOutcome(
            content=[{"type": "text", "text": text}],
            structured_content=data if isinstance(data, dict) else {"result": data},
            is_error=False,
            duration_ms=duration_ms,
        )
    message = body.get("error") if isinstance(body, dict) else None
    message = str(message or f"HTTP {response.status_code}")
    if response.status_code == 429:
        retry = response.headers.get("Retry-After")
        message = (
            f"rate limited by {config.name}" + (f"; retry after {retry} s" if retry else "") + f": {message}"
        )
    return ToolCallOutcome(
        content=[{"type": "text", "text": message}],
        structured_content=None,
        is_error=True,
        duration_ms=duration_ms,
        error=message,
    )


def _json_text(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, default=str)
