"""The tool catalog: one list of every tool netops can call, and one way to call them.

Three faces use it — the chat agent, the REST tool gateway and the ``/mcp`` endpoint — and none
reaches past it. Tools come from built-in providers (netops' own NetBox tools, registered with
:func:`register_provider`) and from registered servers whose tool lists were cached by the last
healthy check. Loading the catalog reads the database once and never touches the network; calling
a tool opens a bounded connection to its server (or runs the built-in handler in-process).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast
from uuid import UUID

from channels.db import database_sync_to_async

from netops.errors import ApplicationError, NotFoundError
from netops.metrics import measure_tool_calls
from netops.secrets import SecretError
from registry.connections import ServerConfig, ToolCallOutcome, call_tool
from registry.health import describe_error

logger = logging.getLogger(__name__)

PermissionLevel = Literal["read_only", "read_write", "admin"]
_SAFE = re.compile(r"[^a-zA-Z0-9_-]")
MAX_NAME = 64

ToolResult = ToolCallOutcome


@dataclass(frozen=True)
class CallContext:
    """Who is calling: recorded by tools that create something (a NetBox change request)."""

    user_id: int | None = None
    via: str = ""
    conversation_id: str | None = None


@dataclass(frozen=True)
class BuiltinTool:
    """A tool implemented inside netops; ``handler`` receives the arguments and the caller's context."""

    name: str
    description: str
    input_schema: dict[str, Any]
    handler: Callable[[dict[str, Any], CallContext], Awaitable[Any]]
    annotations: dict[str, Any] = field(default_factory=dict)
    permission: PermissionLevel = "read_only"
    title: str | None = None


@dataclass(frozen=True)
class BuiltinProvider:
    """A named group of built-in tools (for example ``netbox``); ``tools`` is called per catalog load."""

    source: str
    tools: Callable[[], Sequence[BuiltinTool]]


@dataclass(frozen=True)
class CatalogTool:
    """One tool as the faces see it; ``name`` is unique and OpenAI-safe (``^[a-zA-Z0-9_-]{1,64}$``)."""

    name: str
    original_name: str
    title: str | None
    description: str
    input_schema: dict[str, Any]
    annotations: dict[str, Any]
    source: str
    source_kind: Literal["builtin", "server"]
    permission: PermissionLevel
    server_id: UUID | None = None

    @property
    def read_only(self) -> bool:
        return bool(self.annotations.get("readOnlyHint"))


@dataclass(frozen=True)
class _ServerEntry:
    """A usable server as loaded from the database: its config builder and cached tools."""

    id: UUID
    name: str
    tools: list[dict[str, Any]]
    config: Callable[[], ServerConfig]
    permission: str = ""
    permissions: dict[str, str] = field(default_factory=dict)


_providers: dict[str, BuiltinProvider] = {}


def register_provider(provider: BuiltinProvider) -> None:
    """Add (or replace) a built-in tool provider; its tools keep their names in every clash."""
    _providers[provider.source] = provider


def unregister_provider(source: str) -> None:
    """Remove a built-in provider (tests, or an app whose backend is not configured)."""
    _providers.pop(source, None)


def safe_name(name: str) -> str:
    """Map any tool name onto OpenAI's function-name alphabet and length."""
    cleaned = _SAFE.sub("_", name) or "tool"
    if len(cleaned) > MAX_NAME:
        digest = hashlib.sha1(cleaned.encode(), usedforsecurity=False).hexdigest()[:8]
        cleaned = f"{cleaned[: MAX_NAME - 9]}_{digest}"
    return cleaned


def _namespaced(source: str, name: str) -> str:
    return safe_name(f"{safe_name(source)}__{name}")


def _default_permission(annotations: dict[str, Any]) -> PermissionLevel:
    declared = annotations.get("x-permission")
    if declared in ("read_only", "read_write", "admin"):
        return cast(PermissionLevel, declared)
    return "read_only" if annotations.get("readOnlyHint") else "read_write"


class ToolCatalog:
    """An immutable view of the tools available at load time, with name resolution and calls."""

    def __init__(
        self,
        builtins: Iterable[BuiltinProvider],
        servers: Iterable[_ServerEntry],
        context: CallContext | None = None,
    ):
        self.context = context or CallContext()
        self._handlers: dict[str, Callable[[dict[str, Any], CallContext], Awaitable[Any]]] = {}
        self._servers: dict[UUID, _ServerEntry] = {}
        self._tools: dict[str, CatalogTool] = {}
        self._build(list(builtins), list(servers))

    def _build(self, builtins: list[BuiltinProvider], servers: list[_ServerEntry]) -> None:
        for provider in builtins:
            for tool in provider.tools():
                name = safe_name(tool.name)
                self._tools[name] = CatalogTool(
                    name=name,
                    original_name=tool.name,
                    title=tool.title,
                    description=tool.description,
                    input_schema=tool.input_schema,
                    annotations=tool.annotations,
                    source=provider.source,
                    source_kind="builtin",
                    permission=tool.permission,
                )
                self._handlers[name] = tool.handler
        # A server tool keeps its plain name unless another source has it too; then every clashing
        # server tool is namespaced with its server name, deterministically whatever the order.
        counts: dict[str, int] = {}
        for server in servers:
            for entry in server.tools:
                counts[safe_name(entry["name"])] = counts.get(safe_name(entry["name"]), 0) + 1
        for server in servers:
            self._servers[server.id] = server
            for entry in server.tools:
                plain = safe_name(entry["name"])
                clash = counts[plain] > 1 or plain in self._handlers
                name = _namespaced(server.name, entry["name"]) if clash else plain
                annotations = dict(entry.get("annotations") or {})
                self._tools[name] = CatalogTool(
                    name=name,
                    original_name=entry["name"],
                    title=entry.get("title"),
                    description=entry.get("description") or "",
                    input_schema=entry.get("input_schema") or {"type": "object", "properties": {}},
                    annotations=annotations,
                    source=server.name,
                    source_kind="server",
                    permission=cast(
                        PermissionLevel,
                        server.permissions.get(entry["name"])
                        or server.permission
                        or _default_permission(annotations),
                    ),
                    server_id=server.id,
                )

    # --- loading -------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        *,
        server_ids: Iterable[UUID] | None = None,
        builtins: bool = True,
        context: CallContext | None = None,
    ) -> ToolCatalog:
        """Build the catalog from the database cache: one query, no network.

        ``server_ids`` limits the registered servers (a conversation's selection); built-in tools
        are included unless ``builtins`` is false.
        """
        from registry.selectors import mcp_server_config, mcp_servers_usable

        queryset = mcp_servers_usable().order_by("name")
        if server_ids is not None:
            queryset = queryset.filter(pk__in=list(server_ids))
        entries = [
            _ServerEntry(
                id=s.pk,
                name=s.name,
                tools=list(s.tools or []),
                config=_bind_config(mcp_server_config, s),
                permission=s.tool_permission,
                permissions=dict(s.tool_permissions or {}),
            )
            for s in queryset
        ]
        return cls(_providers.values() if builtins else (), entries, context)

    @classmethod
    async def aload(
        cls,
        *,
        server_ids: Iterable[UUID] | None = None,
        builtins: bool = True,
        context: CallContext | None = None,
    ) -> ToolCatalog:
        """:meth:`load` for async callers: the query runs in a worker thread whose connection is closed."""
        ids = list(server_ids) if server_ids is not None else None
        return await database_sync_to_async(cls.load)(server_ids=ids, builtins=builtins, context=context)

    # --- reading -------------------------------------------------------------------------------

    def tools(self) -> list[CatalogTool]:
        """Every tool, built-in sources first, then servers by name."""
        return list(self._tools.values())

    def get(self, name: str) -> CatalogTool:
        """The tool called ``name``; :class:`NotFoundError` if there is none."""
        try:
            return self._tools[name]
        except KeyError:
            raise NotFoundError(f"no tool named {name!r} in the catalog") from None

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    # --- calling -------------------------------------------------------------------------------

    @measure_tool_calls
    async def call(self, name: str, arguments: dict[str, Any], *, timeout: float | None = None) -> ToolResult:
        """Call ``name`` with ``arguments``; failures come back as ``is_error`` results, not exceptions.

        The call is bounded by ``timeout`` (default: the server's call timeout). Cancelling the
        awaiting task cancels the call, which the MCP client reports to the server.
        """
        tool = self.get(name)
        started = time.perf_counter()
        try:
            if tool.source_kind == "builtin":
                return await self._call_builtin(tool, arguments, timeout, started)
            assert tool.server_id is not None
            config = self._servers[tool.server_id].config()
            bound = timeout if timeout is not None else config.call_timeout
            async with asyncio.timeout(bound):
                return await call_tool(config, tool.original_name, arguments, timeout=bound)
        except TimeoutError:
            bound_text = f"{timeout:g} s" if timeout is not None else "its time limit"
            return _error(f"{name} on {tool.source} did not answer within {bound_text}", started, 504)
        except SecretError as exc:
            return _error(f"{tool.source} is misconfigured: {exc}", started, 502)
        except ApplicationError as exc:  # a built-in tool's expected failure, already worded for people
            return _error(str(exc), started, exc.status_code)
        except Exception as exc:  # a remote failure is a tool error for the caller, not a crash
            logger.warning(
                "tool call failed", extra={"tool": name, "source": tool.source, "error": describe_error(exc)}
            )
            return _error(f"{name} on {tool.source} failed: {describe_error(exc)}", started, 502)

    async def _call_builtin(
        self, tool: CatalogTool, arguments: dict[str, Any], timeout: float | None, started: float
    ) -> ToolResult:
        handler = self._handlers[tool.name]
        if timeout is not None:
            async with asyncio.timeout(timeout):
                data = await handler(arguments, self.context)
        else:
            data = await handler(arguments, self.context)
        return _builtin_result(data, started)


def _bind_config(build: Callable[[Any], ServerConfig], server: Any) -> Callable[[], ServerConfig]:
    return lambda: build(server)


def _error(message: str, started: float, status: int) -> ToolResult:
    return ToolCallOutcome(
        content=[{"type": "text", "text": message}],
        structured_content=None,
        is_error=True,
        duration_ms=(time.perf_counter() - started) * 1000,
        error=message,
        status=status,
    )


def _builtin_result(data: Any, started: float) -> ToolResult:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, default=str)
    return ToolCallOutcome(
        content=[{"type": "text", "text": text}],
        structured_content=data if isinstance(data, dict) else {"result": data},
        is_error=False,
        duration_ms=(time.perf_counter() - started) * 1000,
    )
