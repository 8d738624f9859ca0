"""netops' own MCP server: the tool catalog over Streamable HTTP at ``/mcp``.

This is the third face of the catalog (DESIGN.md): MCP clients see exactly what the agent and the
REST gateway see — netops' NetBox tools first, then the registered servers' tools, with their input
schemas and annotations — and every call goes through :meth:`ToolCatalog.call`, so a NetBox write
tool creates a change request (never a write) that records the client's user as the requester.

The SDK's lowlevel :class:`~mcp.server.lowlevel.Server` is used rather than ``MCPServer`` because the
tool list is dynamic: it is read from the catalog (the database cache, never the network) on every
``tools/list``, so servers registered or checked since are visible at once, in every process.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import importlib.metadata
import json
import threading
from collections.abc import MutableMapping
from dataclasses import dataclass, replace
from typing import Any

import mcp_types as types
from django.conf import settings
from django_guid.config import settings as guid_settings
from django_guid.context import guid
from mcp.server import CacheHint, Server, ServerRequestContext
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from netops.logs import set_log_user
from registry import key_policy, tool_access
from registry.catalog import CatalogTool, ToolCallOutcome, ToolCatalog
from registry.keys import Caller
from registry.keys import authenticate as authenticate_header

PATHS = ("/mcp", "/mcp/")
# Where the authenticated caller travels with the request: the ASGI scope's ``state`` dict, which
# the SDK hands to handlers as ``ctx.request.state``. Not a context variable: the SDK runs handlers
# in tasks of its own task group, whose context need not be this request's.
_STATE_KEY = "netops_mcp_caller"
_ADMISSION_KEY = "netops_mcp_admission"
REQUEST_ID_HEADER = guid_settings.guid_header_name  # X-Request-ID, as for Django's requests
_CATALOG_KEY = "netops_mcp_catalog"


def is_mcp_path(path: str) -> bool:
    """Whether an HTTP path belongs to the MCP endpoint rather than to Django."""
    return path == "/mcp" or path.startswith("/mcp/")


# --- authentication -------------------------------------------------------------------------------


def authenticate(authorization: str) -> Caller | None:
    """The caller for an ``Authorization`` header: an API key (``nop_...``) or a DRF token.

    A token's level and rate limit follow :mod:`registry.key_policy` (the user's permissions, the
    default hourly limit per user). Synchronous (a query or two): call it through
    ``database_sync_to_async``.
    """
    caller = authenticate_header(authorization, allow_tokens=True)
    return key_policy.token_caller(caller) if caller is not None else None


def _with_headers(send: Send, extra: dict[str, str]) -> Send:
    """``send`` that adds ``extra`` to the response's headers (the SDK builds the response itself)."""
    encoded = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in extra.items()]

    async def sending(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *encoded]}
        await send(message)

    return sending


# --- Host and Origin checks -------------------------------------------------------------------------


def transport_security(allowed_hosts: list[str], trusted_origins: list[str]) -> TransportSecuritySettings:
    """DNS-rebinding protection from Django's own host and origin settings.

    A Host is allowed with any port (``localhost`` -> ``localhost:*``); an Origin is allowed when its
    host is (http or https, any port) or when it is one of ``CSRF_TRUSTED_ORIGINS``. ``"*"`` in
    ``ALLOWED_HOSTS`` turns the check off, as it does for Django. The SDK matches hosts exactly, so a
    Django subdomain pattern (``.example.com``) admits only the bare domain here.
    """
    if "*" in allowed_hosts:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    hosts = [host.lstrip(".") for host in allowed_hosts if host.lstrip(".")]
    origins = [
        f"{scheme}://{host}{port}" for host in hosts for scheme in ("http", "https") for port in ("", ":*")
    ]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=[pattern for host in hosts for pattern in (host, f"{host}:*")],
        allowed_origins=origins + [origin.rstrip("/") for origin in trusted_origins],
    )


# --- the MCP handlers -------------------------------------------------------------------------------


async def _catalog(ctx: ServerRequestContext[Any, Any]) -> ToolCatalog:
    """The catalog for this HTTP request's caller, loaded once per request.

    On the 2026-07-28 path the SDK may list tools before a call (to check ``Mcp-Param-*`` headers)
    with the same request: one load serves both, and both see the same snapshot. A request without
    the caller :class:`MCPEndpoint` stores is refused (only possible if the server is mounted bare).
    """
    state = ctx.request.state if isinstance(ctx.request, Request) else None
    caller = getattr(state, _STATE_KEY, None)
    if state is None or not isinstance(caller, Caller):
        raise MCPError(code=types.INVALID_REQUEST, message="not authenticated")
    set_log_user(caller.username)
    catalog = getattr(state, _CATALOG_KEY, None)
    if not isinstance(catalog, ToolCatalog):
        catalog = await ToolCatalog.aload(context=caller.context)
        setattr(state, _CATALOG_KEY, catalog)
    return catalog


def _tool(tool: CatalogTool) -> types.Tool:
    try:
        annotations = types.ToolAnnotations.model_validate(tool.annotations) if tool.annotations else None
    except ValidationError:  # a remote server's malformed hints must not hide the whole list
        annotations = None
    return types.Tool(
        name=tool.name,
        title=tool.title,
        description=tool.description,
        input_schema=tool.input_schema,
        output_schema=tool.output_schema,
        annotations=annotations,
    )


def _result(outcome: ToolCallOutcome, *, declared_output: bool = False) -> types.CallToolResult:
    """The catalog's outcome on the wire; content that does not validate is sent as its text.

    A tool that declares an ``outputSchema`` must send structured content with every success
    (clients check it). When netops dropped it for being over ``TOOL_RESULT_MAX_CHARS``, the
    answer is an ``isError`` result saying so, with the cut text, not a success clients reject.
    """
    if declared_output and not outcome.is_error and outcome.structured_content is None:
        note = "the structured result was over TOOL_RESULT_MAX_CHARS and was dropped; the text is cut"
        outcome = replace(
            outcome, content=[*outcome.content, {"type": "text", "text": note}], is_error=True, error=note
        )
    structured = outcome.structured_content
    if structured is not None and not isinstance(structured, dict):
        structured = {"result": structured}  # handshake-era protocol versions require an object
    try:
        return types.CallToolResult.model_validate(
            {"content": outcome.content, "structuredContent": structured, "isError": outcome.is_error}
        )
    except ValidationError:
        return types.CallToolResult(
            content=[types.TextContent(text=outcome.text())],
            structured_content=structured,
            is_error=outcome.is_error,
        )


async def _list_tools(
    ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
) -> types.ListToolsResult:
    catalog = await _catalog(ctx)
    caller = _caller(ctx)
    offered = [tool for tool in catalog.tools() if caller.may_call(tool.permission)]
    start = _cursor_offset(params.cursor if params is not None else None)
    size = page_size()
    page = offered[start : start + size]
    following = start + size if start + size < len(offered) else None
    return types.ListToolsResult(
        tools=[_tool(tool) for tool in page],
        next_cursor=_cursor(following) if following is not None else None,
    )


def page_size() -> int:
    """``MCP_TOOLS_PAGE_SIZE``: tools per ``tools/list`` page (one 717-tool event was 1.9 MB)."""
    return max(1, int(getattr(settings, "MCP_TOOLS_PAGE_SIZE", 100)))


def _cursor(offset: int) -> str:
    """An opaque cursor: clients pass it back unchanged."""
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def _cursor_offset(cursor: str | None) -> int:
    """The offset a cursor of :func:`_cursor` stands for; a bad cursor is invalid params."""
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        offset = json.loads(raw)["o"]
    except (ValueError, binascii.Error, KeyError, TypeError):
        raise MCPError(code=types.INVALID_PARAMS, message="invalid cursor") from None
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise MCPError(code=types.INVALID_PARAMS, message="invalid cursor")
    return offset


async def _call_tool(
    ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
) -> types.CallToolResult:
    """Call through the catalog; whatever the tool does wrong comes back as ``isError``.

    An unknown tool name is the client's mistake, not the tool's: a protocol error (invalid params),
    as the MCP specification asks.
    """
    catalog = await _catalog(ctx)
    caller = _caller(ctx)
    if params.name not in catalog or not caller.may_call(catalog.get(params.name).permission):
        raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}")
    outcome = await catalog.call(params.name, params.arguments or {}, progress=_progress_relay(ctx))
    await tool_access.audit(
        _admission(ctx),
        tool=params.name,
        arguments=params.arguments or {},
        status=200 if not outcome.is_error else (outcome.status or 502),
        duration_ms=outcome.duration_ms,
    )
    _raise_upstream_failure(outcome)
    return _result(outcome, declared_output=catalog.get(params.name).output_schema is not None)


def _progress_relay(ctx: ServerRequestContext[Any, Any]) -> Any:
    """The upstream server's progress, relayed to this client's ``progressToken`` (if it sent one)."""

    async def relay(progress: float, total: float | None, message: str | None) -> None:
        await ctx.session.report_progress(progress, total, message)

    return relay


def _raise_upstream_failure(outcome: ToolCallOutcome) -> None:
    """Upstream rate limits and JSON-RPC errors stay protocol errors, with their data.

    A tool's own ``isError`` and other server failures stay results with ``isError`` (the text says
    which); the kind comes from the outcome's typed ``failure``, never from its words.
    """
    if outcome.failure == "rate_limited":
        data = {"status": 429, "retryAfter": outcome.retry_after}
        raise MCPError(code=types.INTERNAL_ERROR, message=outcome.text(), data=data)
    if outcome.failure == "protocol" and outcome.rpc_error is not None:
        error = outcome.rpc_error
        raise MCPError(code=int(error["code"]), message=str(error["message"]), data=error.get("data"))


def _admission(ctx: ServerRequestContext[Any, Any]) -> tool_access.Admission:
    """The admission :class:`MCPEndpoint` stored with the request (caller, rate, request id)."""
    state = getattr(ctx.request, "state", None) if isinstance(ctx.request, Request) else None
    admission = getattr(state, _ADMISSION_KEY, None)
    if not isinstance(admission, tool_access.Admission):
        raise MCPError(code=types.INVALID_REQUEST, message="not authenticated")
    return admission


def _caller(ctx: ServerRequestContext[Any, Any]) -> Caller:
    request = ctx.request
    state = getattr(request, "state", None) if isinstance(request, Request) else None
    caller = getattr(state, _STATE_KEY, None)
    if not isinstance(caller, Caller):
        raise MCPError(code=types.INVALID_REQUEST, message="not authenticated")
    return caller


def _version() -> str:
    try:
        return importlib.metadata.version("netops")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was never installed
        return ""


def build_server() -> Server[Any]:
    """The lowlevel server with the two tool handlers.

    ``tools/list`` results may not be cached by clients beyond the request (``ttl_ms=0``) nor shared
    between credentials (``private``): the list changes as servers are registered, and with API-key
    permission levels it will differ per caller.
    """
    return Server(
        "netops",
        version=_version(),
        instructions="netops' tool catalog: NetBox tools (writes become change requests for review) "
        "and the tools of the MCP servers registered in netops.",
        cache_hints={"tools/list": CacheHint(ttl_ms=0, scope="private")},
        on_list_tools=_list_tools,
        on_call_tool=_call_tool,
    )


# --- the ASGI app -------------------------------------------------------------------------------------


@dataclass
class _Running:
    """A session manager running in one event loop, and the task that keeps it running."""

    loop: asyncio.AbstractEventLoop
    manager: StreamableHTTPSessionManager
    task: asyncio.Task[None]
    ready: asyncio.Event


class MCPEndpoint:
    """The ASGI app for ``/mcp``: authenticate, then hand the request to the SDK's session manager.

    Stateless mode, deliberately: netops runs as several daphne processes behind a load balancer,
    and a stateful session (``Mcp-Session-Id``) lives in the memory of the one process that created
    it, so the next request of the same client, routed elsewhere, would get 404. Stateless, every
    POST is self-contained and any process can answer it. What is given up — server-to-client
    requests (sampling, elicitation) and resumable GET streams — netops' tools do not use. Clients
    speaking the 2026-07-28 protocol are per-request (stateless) whatever this setting says.

    The session manager needs its ``run()`` context entered before the first request, normally by
    an ASGI lifespan event; daphne sends none, so the first request starts it in a background task
    that lives as long as the event loop (one per loop, so in-process tests on fresh loops work too).
    """

    def __init__(self, security: TransportSecuritySettings | None = None) -> None:
        self._server = build_server()
        self._security = security
        self._lock = threading.Lock()
        self._running: _Running | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] not in PATHS:
            await JSONResponse({"error": "not found: the MCP endpoint is /mcp"}, status_code=404)(
                scope, receive, send
            )
            return
        if scope["method"] != "POST":
            # Stateless, a GET stream could never carry anything; the spec lets a server say so.
            response = JSONResponse(
                {"error": "only POST is served"}, status_code=405, headers={"Allow": "POST"}
            )
            await response(scope, receive, send)
            return
        headers = Headers(scope=scope)
        # The request id, as django-guid gives one to Django's requests: on every log line of this
        # request (the context variable), in the audit row and in the X-Request-ID answer header.
        request_id = tool_access.request_id_from(headers.get(REQUEST_ID_HEADER))
        guid.set(request_id)
        send = _with_headers(send, {REQUEST_ID_HEADER: request_id})
        try:  # An API key shares its hourly limit with the tool gateway; a token is counted per user.
            admission = await tool_access.admit(
                headers.get("authorization"),
                via="mcp",
                request_id=request_id,
                client_address=(scope.get("client") or (None,))[0],
            )
        except tool_access.AccessRefused as refused:  # the status and headers come from its type
            response = JSONResponse(
                {"error": refused.message}, status_code=refused.status_code, headers=refused.headers()
            )
            await response(scope, receive, send)
            return
        caller, rate = admission.caller, admission.rate
        receive, refusal = await _checked_body(receive)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        manager = await self._manager()
        state = {**scope.get("state", {}), _STATE_KEY: caller, _ADMISSION_KEY: admission}
        await manager.handle_request({**scope, "state": state}, receive, _with_headers(send, rate.headers()))

    async def _manager(self) -> StreamableHTTPSessionManager:
        """The running session manager of this event loop, started by the first request to need it.

        Check and start happen under a lock with no await in between, so concurrent first requests
        start one manager; the others wait until it is ready.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            running = self._running
            if running is None or running.loop is not loop or running.task.done():
                manager = StreamableHTTPSessionManager(
                    app=self._server, stateless=True, security_settings=self._security
                )
                ready = asyncio.Event()
                task = loop.create_task(_keep_running(manager, ready), name="mcp-session-manager")
                running = self._running = _Running(loop, manager, task, ready)
        await running.ready.wait()
        if running.task.done():  # it failed to start; the next request tries again
            running.task.result()
            raise RuntimeError("the MCP session manager stopped")
        return running.manager


def _rpc_error(code: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}, status_code=400
    )


async def _checked_body(receive: Receive) -> tuple[Receive, JSONResponse | None]:
    """Read the body once: malformed JSON is -32700, a batch or a non-object -32600 (never a pydantic dump).

    Returns a ``receive`` that replays the body for the SDK, and the refusal if there is one.
    """
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> MutableMapping[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return replay, _rpc_error(types.PARSE_ERROR, "Parse error: the body is not JSON")
    if isinstance(parsed, list):
        return replay, _rpc_error(
            types.INVALID_REQUEST, "Invalid request: JSON-RPC batches are not supported"
        )
    if not isinstance(parsed, dict) or parsed.get("jsonrpc") != "2.0":
        return replay, _rpc_error(types.INVALID_REQUEST, "Invalid request: not a JSON-RPC 2.0 message object")
    return replay, None


async def _keep_running(manager: StreamableHTTPSessionManager, ready: asyncio.Event) -> None:
    """Hold the manager's ``run()`` context open for good; ``ready`` is set once it is up (or failed)."""
    try:
        async with manager.run():
            ready.set()
            await asyncio.Event().wait()  # until the event loop ends
    finally:
        ready.set()


def mcp_asgi_app() -> MCPEndpoint:
    """The endpoint configured from Django settings (``ALLOWED_HOSTS``, ``CSRF_TRUSTED_ORIGINS``)."""
    return MCPEndpoint(transport_security(list(settings.ALLOWED_HOSTS), list(settings.CSRF_TRUSTED_ORIGINS)))
