"""The tool catalog: one list of every tool netops can call, and one way to call them.

Three faces use it — the chat agent, the REST tool gateway and the ``/mcp`` endpoint — and none
reaches past it. Tools come from built-in providers (netops' own NetBox tools, registered with
:func:`register_provider`) and from registered servers: their active, enabled Tool rows
(:mod:`registry.tool_sync`), under the public names stored at first discovery. Loading the catalog reads the database once and never touches the network; calling
a tool opens a bounded connection to its server (or runs the built-in handler in-process).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast
from uuid import UUID

from channels.db import database_sync_to_async
from django.conf import settings

from netops.errors import ApplicationError, NotFoundError
from netops.metrics import measure_tool_calls
from netops.redaction import TRUNCATION_MARK, redactor_for, sanitize
from netops.secrets import SecretError
from registry.connections import (
    ProgressCallback,
    ServerConfig,
    ServerRateLimited,
    ServerRefusedCredentials,
    ToolCallOutcome,
    UpstreamProtocolError,
    call_tool,
)
from registry.health import describe_error
from registry.validation import validate_arguments_async

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
    output_schema: dict[str, Any] | None = None

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


def namespaced_name(source: str, name: str) -> str:
    """``<source>__<name>``, made safe: the public name of a server tool whose plain name is taken."""
    return safe_name(f"{safe_name(source)}__{name}")


_namespaced = namespaced_name


def builtin_tool_names() -> set[str]:
    """The names of every built-in tool registered in this process (they keep their names)."""
    return {safe_name(tool.name) for provider in _providers.values() for tool in provider.tools()}


def _server_tool_permission(entry: dict[str, Any], server: _ServerEntry) -> PermissionLevel:
    """The level an API key needs for a server tool.

    An explicit per-tool level on the server wins; then the admin's access choice on the tool
    (read-only: ``read_only``; writable: ``read_write``, or ``admin`` if the tool declares it);
    then the server-wide level; then the tool's own annotations.
    """
    explicit = server.permissions.get(entry["name"])
    if explicit:
        return cast(PermissionLevel, explicit)
    access = entry.get("access") or "inherit"
    declared = _default_permission(dict(entry.get("annotations") or {}))
    if access == "read_only":
        return "read_only"
    if access == "writable":
        return "admin" if declared == "admin" else "read_write"
    return cast(PermissionLevel, server.permission or declared)


def _effective_annotations(entry: dict[str, Any]) -> dict[str, Any]:
    """The tool's annotations with the admin's access choice written over ``readOnlyHint``."""
    annotations = dict(entry.get("annotations") or {})
    access = entry.get("access") or "inherit"
    if access in ("read_only", "writable"):
        annotations["readOnlyHint"] = access == "read_only"
    return annotations


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
        # A server tool is offered under the public name stored when it was first discovered
        # (registry.tool_sync): it does not depend on which servers are loaded. Built-in tools
        # keep their names; a stored name that a built-in registered later now holds is offered
        # namespaced instead.
        for server in servers:
            self._servers[server.id] = server
            for entry in server.tools:
                name = entry.get("public_name") or safe_name(entry["name"])
                if name in self._tools:
                    name = _namespaced(server.name, entry["name"])
                    if name in self._tools:
                        logger.warning("tool name clash", extra={"tool": name, "source": server.name})
                        continue
                annotations = _effective_annotations(entry)
                self._tools[name] = CatalogTool(
                    name=name,
                    original_name=entry["name"],
                    title=entry.get("title"),
                    description=entry.get("description") or "",
                    input_schema=entry.get("input_schema") or {"type": "object", "properties": {}},
                    annotations=annotations,
                    source=server.name,
                    source_kind="server",
                    permission=_server_tool_permission(entry, server),
                    server_id=server.id,
                    output_schema=entry.get("output_schema") or None,
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
        entries = _usable_entries()
        if server_ids is not None:
            wanted = set(server_ids)
            entries = [e for e in entries if e.id in wanted]
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
    async def call(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        timeout: float | None = None,
        progress: ProgressCallback | None = None,
    ) -> ToolResult:
        """Call ``name`` with ``arguments``; failures come back as ``is_error`` results, not exceptions.

        The call is bounded by ``timeout`` (default: the server's call timeout). Cancelling the
        awaiting task cancels the call, which the MCP client reports to the server.

        Every result is sanitised here, so all three faces get the same safe text: redacted of
        every secret netops holds and of the server's own credentials (a server may echo them),
        then cut to ``TOOL_RESULT_MAX_CHARS``.
        """
        tool = self.get(name)
        secrets: list[str] = []
        outcome = await self._call(tool, arguments, timeout, secrets, progress)
        return sanitize_outcome(outcome, secrets=secrets, limit=result_limit())

    async def _call(
        self,
        tool: CatalogTool,
        arguments: dict[str, Any],
        timeout: float | None,
        secrets: list[str],
        progress: ProgressCallback | None = None,
    ) -> ToolResult:
        name = tool.name
        started = time.perf_counter()
        try:
            # Every face (agent, gateway, /mcp) gets the same bounded check against the tool's own
            # schema: a wrong argument is a 400-type tool error naming the field, never a call.
            await validate_arguments_async(tool.input_schema, arguments)
            if tool.source_kind == "builtin":
                return await self._call_builtin(tool, arguments, timeout, started)
            assert tool.server_id is not None
            config = self._servers[tool.server_id].config()
            secrets.extend(config.secret_values())
            bound = timeout if timeout is not None else config.call_timeout
            async with asyncio.timeout(bound):
                return await call_tool(
                    config, tool.original_name, arguments, timeout=bound, progress=progress
                )
        except TimeoutError:
            bound_text = f"{timeout:g} s" if timeout is not None else "its time limit"
            return _error(
                f"{name} on {tool.source} did not answer within {bound_text}", started, 504, failure="timeout"
            )
        except SecretError as exc:
            return _error(f"{tool.source} is misconfigured: {exc}", started, 502)
        # Upstream failures keep their meaning, typed by exception (never by the message's words).
        except ServerRefusedCredentials as exc:
            reason = sanitize(str(exc), secrets=secrets, limit=ERROR_TEXT_CHARS)
            return _error(f"{name} on {tool.source} failed: {reason}", started, 502, failure="credentials")
        except ServerRateLimited as exc:
            reason = sanitize(str(exc), secrets=secrets, limit=ERROR_TEXT_CHARS)
            outcome = _error(
                f"{name} on {tool.source} failed: {reason}", started, 429, failure="rate_limited"
            )
            outcome.retry_after = exc.retry_after
            return outcome
        except UpstreamProtocolError as exc:
            reason = sanitize(str(exc), secrets=secrets, limit=ERROR_TEXT_CHARS)
            outcome = _error(f"{name} on {tool.source} failed: {reason}", started, 502, failure="protocol")
            outcome.rpc_error = {"code": exc.code, "message": exc.message, "data": exc.data}
            return outcome
        except ApplicationError as exc:  # a built-in tool's expected failure, already worded for people
            return _error(str(exc), started, exc.status_code)
        except Exception as exc:  # a remote failure is a tool error for the caller, not a crash
            reason = sanitize(describe_error(exc), secrets=secrets, limit=ERROR_TEXT_CHARS)
            logger.warning("tool call failed", extra={"tool": name, "source": tool.source, "error": reason})
            return _error(f"{name} on {tool.source} failed: {reason}", started, 502, failure="unreachable")

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


# Error texts are short by nature; a remote error page is cut to this many characters.
ERROR_TEXT_CHARS = 2000


# Every usable server with its offered tools, as of one registry revision (:mod:`registry.revision`):
# loading the catalog reads the revision token (one row) and rebuilds only when it changed.
_cache_lock = threading.Lock()
_cached: tuple[str, list[_ServerEntry]] | None = None


def _usable_entries() -> list[_ServerEntry]:
    global _cached
    from registry import revision
    from registry.selectors import mcp_server_config, mcp_servers_usable, tools_offered

    token = revision.current()
    cached = _cached
    if token and cached is not None and cached[0] == token:
        return cached[1]
    queryset = mcp_servers_usable().order_by("name")
    offered = tools_offered(servers=queryset)
    entries = [
        _ServerEntry(
            id=s.pk,
            name=s.name,
            tools=offered.get(s.pk, []),
            config=_bind_config(mcp_server_config, s),
            permission=s.tool_permission,
            permissions=dict(s.tool_permissions or {}),
        )
        for s in queryset
    ]
    with _cache_lock:
        _cached = (token, entries)
    return entries


def result_limit() -> int:
    """``TOOL_RESULT_MAX_CHARS``: the most characters of a tool result netops keeps or passes on."""
    return int(getattr(settings, "TOOL_RESULT_MAX_CHARS", 200_000))


def sanitize_outcome(outcome: ToolResult, *, secrets: Sequence[str] = (), limit: int) -> ToolResult:
    """``outcome`` redacted (every text, structured content, the error) and then cut to ``limit``.

    Redaction comes before every cut. ``limit`` bounds the text of all content items together;
    items past it are dropped with a marker, and structured content whose JSON exceeds it is
    dropped (the text content still carries the cut result), so a 20 MB answer is never stored,
    returned or rendered whole.
    """
    redactor = redactor_for(secrets)
    remaining = limit
    content: list[dict[str, Any]] = []
    for position, item in enumerate(outcome.content):
        if remaining <= 0:
            left = len(outcome.content) - position
            content.append({"type": "text", "text": f"{TRUNCATION_MARK}{left} more content items omitted]"})
            break
        if item.get("type") == "text":
            text = sanitize(str(item.get("text", "")), secrets=secrets, limit=remaining)
            content.append({**item, "text": text})
            remaining -= min(len(text), remaining)
            continue
        size = _json_size(item)
        if size > remaining:
            kind = item.get("type", "content")
            content.append(
                {"type": "text", "text": f"[{kind} content of {size:,} characters omitted: too large]"}
            )
            remaining = 0
            continue
        content.append(redactor.redact_data(item))
        remaining -= size
    structured = outcome.structured_content
    if structured is not None:
        structured = redactor.redact_data(structured) if _json_size(structured) <= limit else None
    error = sanitize(outcome.error, secrets=secrets, limit=limit) if outcome.error else outcome.error
    return ToolCallOutcome(
        content=content,
        structured_content=structured,
        is_error=outcome.is_error,
        duration_ms=outcome.duration_ms,
        error=error,
        status=outcome.status,
        failure=outcome.failure,
        retry_after=outcome.retry_after,
        rpc_error=redactor.redact_data(outcome.rpc_error) if outcome.rpc_error else None,
    )


def _json_size(data: Any) -> int:
    return len(json.dumps(data, ensure_ascii=False, default=str))


def _bind_config(build: Callable[[Any], ServerConfig], server: Any) -> Callable[[], ServerConfig]:
    return lambda: build(server)


def _error(message: str, started: float, status: int, *, failure: str | None = None) -> ToolResult:
    return ToolCallOutcome(
        content=[{"type": "text", "text": message}],
        structured_content=None,
        is_error=True,
        duration_ms=(time.perf_counter() - started) * 1000,
        error=message,
        status=status,
        failure=failure,
    )


def _builtin_result(data: Any, started: float) -> ToolResult:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, default=str)
    return ToolCallOutcome(
        content=[{"type": "text", "text": text}],
        structured_content=data if isinstance(data, dict) else {"result": data},
        is_error=False,
        duration_ms=(time.perf_counter() - started) * 1000,
    )
