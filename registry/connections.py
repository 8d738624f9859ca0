"""Talking to tool servers: MCP over Streamable HTTP, legacy SSE and stdio, and REST tool APIs.

This module imports no Django. It works on :class:`ServerConfig`, a frozen snapshot with secrets
already resolved, so it can run in any event loop (daphne's, a management command's, a benchmark)
and be tested alone. Every public coroutine is bounded by the timeout in the config.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict, TypeVar, cast
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
import httpx2
import mcp.types as mcp_types
from mcp import Client, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError

from netops.redaction import sanitize, unsafe_header_value
from registry.sessions import ConnectionBroken, SessionUnavailable, broken_connection, pool

Protocol = Literal["http", "sse", "stdio", "rest"]
T = TypeVar("T")

# Limits on how much of a remote tool list is kept: a misbehaving server must not fill the database.
MAX_TOOLS_PER_SERVER = 500
MAX_LIST_PAGES = 20
# How much of a remote error body goes into a message (after redaction).
ERROR_BODY_CHARS = 200


class ToolDefinition(TypedDict):
    """A tool as cached in the registry, in MCP's wire vocabulary (camelCase annotation hints)."""

    name: str
    title: str | None
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    annotations: dict[str, Any]
    # MCP's ``execution`` hints (``{"taskSupport": "required"}``): a tool that needs task
    # augmentation cannot be called with a plain ``tools/call``.
    execution: NotRequired[dict[str, Any]]


# Progress of one call as the server reports it: ``async (progress, total, message) -> None``.
ProgressCallback = ProgressFnT


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

    def secret_values(self) -> tuple[str, ...]:
        """The secrets this config carries in headers: the credential after a scheme (or the value).

        Text from this server is masked of them even if this process never registered them; the
        scheme stays readable (``Bearer [redacted]``), and the base64 forms of ``Bearer <secret>``
        are covered by the secret's own forms at every alignment. ``env`` is left out: it mixes
        plain values (``PATH``) with secrets, and the secrets among them were registered
        process-wide when their references were resolved for this config.
        """
        values: list[str] = []
        for value in self.headers.values():
            _scheme, _, credential = value.partition(" ")
            values.append(credential or value)
        return tuple(values)

    def check_headers(self) -> None:
        """Refuse to send a header value HTTP cannot carry; the error names the header only.

        Without this check the HTTP library raises ``Illegal header value b'Bearer ...'`` (or a
        UnicodeEncodeError holding the value), and the secret ends up in an error text.
        """
        for name, value in self.headers.items():
            if unsafe_header_value(value):
                raise ServerUnreachable(
                    f"the request could not be sent: invalid header value in {name} "
                    "(the secret it is built from holds a line break, control or non-ASCII character)"
                )

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
    # Set for failures of the server rather than of the tool (see ``registry.catalog``): the kind
    # comes from the exception type, never from the message's words.
    failure: str | None = None
    retry_after: str | None = None  # an upstream 429's Retry-After, passed on
    rpc_error: dict[str, Any] | None = None  # an upstream JSON-RPC error: code, message, data

    def text(self) -> str:
        """The textual content joined, for logs and for the LLM."""
        if self.error and not self.content:
            return self.error
        return "\n".join(str(c.get("text", "")) for c in self.content if c.get("type") == "text")


class ServerUnreachable(Exception):
    """The server could not be reached or answered with something other than the protocol.

    Its message is safe to store and show: built from the method, a URL without credentials and
    the error type, plus (redacted, cut) text of the server's answer — never what was sent.
    """


class HealthPathMissing(ServerUnreachable):
    """The configured health path answered 404: the server has no such route (the reference MCP
    servers have none); the MCP handshake still decides health."""


class ServerRefusedCredentials(ServerUnreachable):
    """The server answered 401 or 403: it refused the credentials netops sent (or sent none)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


class ServerRateLimited(ServerUnreachable):
    """The server answered 429; ``retry_after`` is its ``Retry-After`` header, if it sent one."""

    def __init__(self, message: str, *, retry_after: str | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamProtocolError(Exception):
    """The server answered a request with a JSON-RPC error; its code, message and data are kept."""

    def __init__(self, server: str, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"{server} answered with JSON-RPC error {code}: {message}")
        self.code = code
        self.message = message
        self.data = data


@dataclass
class _HTTPRefusal:
    """The last refusing HTTP status (401, 403, 429) the MCP transport saw on one connection.

    The SDK's client turns any 4xx into a generic JSON-RPC error and drops the status; a response
    hook on the HTTP client records it so the failure can be typed (:func:`refusal_error`).
    """

    status: int | None = None
    retry_after: str | None = None

    def reset(self) -> None:
        """Forget an earlier request's refusal (the recorder lives as long as the session)."""
        self.status, self.retry_after = None, None

    async def hook(self, response: httpx2.Response) -> None:
        if response.status_code in (401, 403, 429):
            self.status = response.status_code
            value = response.headers.get("Retry-After")
            self.retry_after = value[:40] if value and not unsafe_header_value(value) else None

    def error(self, config: ServerConfig) -> ServerUnreachable | None:
        return refusal_error(config, self.status, self.retry_after)


def refusal_error(
    config: ServerConfig, status: int | None, retry_after: str | None
) -> ServerUnreachable | None:
    """The typed error for a refusing HTTP status of ``config``'s server, or None for any other."""
    if status in (401, 403):
        return ServerRefusedCredentials(
            f"{config.name} refused the credentials (HTTP {status} from {safe_url(config.endpoint)})",
            status=status,
        )
    if status == 429:
        after = f"; retry after {retry_after} s" if retry_after else ""
        return ServerRateLimited(
            f"{config.name} is rate limiting netops (HTTP 429){after}", retry_after=retry_after
        )
    return None


def safe_url(url: str) -> str:
    """``url`` without user info and query string (either may carry a credential)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def describe_transport_error(exc: BaseException, method: str, url: str) -> str:
    """A transport failure described by its type and the URL, never by what was sent.

    httpx/h11 messages can quote request headers (``Illegal header value b'Bearer ...'``), so
    only the exception type is named, with the OS reason for a refused or reset connection.
    """
    if isinstance(exc, httpx.LocalProtocolError | httpx2.LocalProtocolError | UnicodeError):
        return f"{method} {safe_url(url)}: the request could not be sent: invalid header or request value"
    reason = ""
    cause = exc.__cause__ or exc.__context__
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, OSError) and cause.strerror:
        reason = f" ({cause.strerror})"
    return f"{method} {safe_url(url)} failed: {type(exc).__name__}{reason}"


def _annotations(tool: mcp_types.Tool) -> dict[str, Any]:
    if tool.annotations is None:
        return {}
    return tool.annotations.model_dump(by_alias=True, exclude_none=True)


def _definition(tool: mcp_types.Tool) -> ToolDefinition:
    definition = ToolDefinition(
        name=tool.name,
        title=tool.title,
        description=tool.description or "",
        input_schema=dict(tool.input_schema or {"type": "object", "properties": {}}),
        output_schema=dict(tool.output_schema) if tool.output_schema else None,
        annotations=_annotations(tool),
    )
    execution = _execution(tool)
    if execution:
        definition["execution"] = execution
    return definition


def _execution(tool: mcp_types.Tool) -> dict[str, Any]:
    execution = getattr(tool, "execution", None)
    if execution is None:
        return {}
    return dict(execution.model_dump(by_alias=True, exclude_none=True))


@dataclass
class _Connection:
    """An open MCP client and the refusal recorder of its HTTP client (kept with the session)."""

    client: Client
    refusal: _HTTPRefusal


@asynccontextmanager
async def _open_connection(config: ServerConfig) -> AsyncIterator[_Connection]:
    """Open a session for the pool; a failure to open is typed like a failed request."""
    refusal = _HTTPRefusal()
    entered = False
    try:
        async with _open_client(config, refusal) as client:
            entered = True
            yield _Connection(client, refusal)
    except Exception as exc:
        if entered:
            raise
        error = _typed_error(exc, config, refusal)
        if error is None:
            raise
        raise error from None


def _typed_error(exc: BaseException, config: ServerConfig, refusal: _HTTPRefusal) -> BaseException | None:
    """The typed error for a failure of an MCP request, or None to let ``exc`` through as it is.

    An HTTP server's 401/403/429 becomes :class:`ServerRefusedCredentials` / :class:`ServerRateLimited`
    (typed from the status the transport saw), an upstream JSON-RPC error
    :class:`UpstreamProtocolError` with its data.
    """
    typed = refusal.error(config)
    if typed is not None:
        return typed
    if isinstance(exc, MCPError):
        return UpstreamProtocolError(config.name, exc.code, exc.message, exc.data)
    group = exc if isinstance(exc, BaseExceptionGroup) else None
    if group is not None and len(group.exceptions) == 1 and isinstance(group.exceptions[0], MCPError):
        inner = group.exceptions[0]
        return UpstreamProtocolError(config.name, inner.code, inner.message, inner.data)
    return None


async def on_session(
    config: ServerConfig,
    operation: Callable[[Client], Awaitable[T]],
    *,
    timeout: float,
    respect_backoff: bool = True,
) -> T:
    """Run ``operation(client)`` on the server's kept MCP session (:mod:`registry.sessions`).

    Not for ``rest``. Failures are typed (see :func:`_typed_error`); a broken connection is retried
    once on a new session by the pool.
    """

    async def typed(connection: _Connection) -> T:
        connection.refusal.reset()
        try:
            return await operation(connection.client)
        except Exception as exc:
            if broken_connection(exc):
                raise  # the pool reconnects; typed below if it gives up
            if isinstance(exc, MCPError) and exc.code == mcp_types.CONNECTION_CLOSED:
                raise ConnectionBroken(exc.message) from None
            error = _typed_error(exc, config, connection.refusal)
            if error is None:
                raise
            raise error from None

    try:
        return await pool().run(
            config.name, config, _open_connection, typed, timeout=timeout, respect_backoff=respect_backoff
        )
    except ConnectionBroken:
        raise ServerUnreachable(f"{config.name} closed the connection (the server exited?)") from None
    except SessionUnavailable as exc:
        raise ServerUnreachable(str(exc)) from None


@asynccontextmanager
async def _open_client(config: ServerConfig, refusal: _HTTPRefusal) -> AsyncIterator[Client]:
    transport: Any
    config.check_headers()
    if config.protocol == "http":
        http_client = httpx2.AsyncClient(
            headers=config.headers, timeout=config.connect_timeout, event_hooks={"response": [refusal.hook]}
        )
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


@dataclass(frozen=True)
class ToolListing:
    """A server's tool list; ``cut`` says why it is incomplete (a limit above), empty when whole."""

    tools: list[ToolDefinition]
    cut: str = ""


async def list_tools(config: ServerConfig) -> ToolListing:
    """Fetch the server's tool list (every page, within the limits above)."""
    if config.protocol == "rest":
        return await _rest_list_tools(config)
    tools: list[ToolDefinition] = []
    cut = ""

    async def every_page(client: Client) -> None:
        nonlocal cut
        tools.clear()
        cursor: str | None = None
        for _ in range(MAX_LIST_PAGES):
            page = await client.list_tools(cursor=cursor, cache_mode="refresh")
            tools.extend(_definition(t) for t in page.tools)
            cursor = page.next_cursor
            if not cursor:
                return
            if len(tools) >= MAX_TOOLS_PER_SERVER:
                cut = f"the tool list was cut at {MAX_TOOLS_PER_SERVER} tools (netops' limit per server)"
                return
        cut = f"the tool list was cut after {MAX_LIST_PAGES} pages (netops' limit per server)"

    # A health check: always tries (no reconnect backoff), bounded by the connect timeout.
    await on_session(config, every_page, timeout=config.connect_timeout, respect_backoff=False)
    if len(tools) > MAX_TOOLS_PER_SERVER:
        cut = f"the tool list was cut at {MAX_TOOLS_PER_SERVER} of {len(tools)} tools (netops' limit per server)"
    return ToolListing(tools[:MAX_TOOLS_PER_SERVER], cut)


_TITLE = re.compile(r"<title[^>]*>([^<]{0,300})", re.IGNORECASE)


def answer_summary(response: httpx.Response, *, secrets: Sequence[str]) -> str:
    """A remote's error answer in a line: an HTML page by its title only, any other text cut short.

    Redacted of every secret first (a 401 page may quote the header netops sent).
    """
    text = response.text
    is_html = "html" in response.headers.get("content-type", "") or text.lstrip()[:15].lower().startswith(
        ("<!doctype", "<html")
    )
    if is_html:
        found = _TITLE.search(text[:20_000])
        title = " ".join(html.unescape(found.group(1)).split()) if found else ""
        title = sanitize(title, secrets=secrets, limit=120)
        return f"an HTML page titled {title!r}" if title else "an HTML page"
    return sanitize(text, secrets=secrets, limit=ERROR_BODY_CHARS)


async def _get(
    config: ServerConfig, url: str, what: str, *, missing: type[ServerUnreachable] = ServerUnreachable
) -> httpx.Response:
    """GET ``url`` with the server's headers; raise :class:`ServerUnreachable` unless it answers 2xx
    (``missing`` for a 404)."""
    config.check_headers()
    async with httpx.AsyncClient(timeout=config.connect_timeout, headers=config.headers) as http:
        try:
            response = await http.get(url)
        except httpx.HTTPError as exc:
            raise ServerUnreachable(f"{what} {describe_transport_error(exc, 'GET', url)}") from None
    if not response.is_success:
        body = answer_summary(response, secrets=config.secret_values())
        error = missing if response.status_code == 404 else ServerUnreachable
        raise error(f"{what} GET {safe_url(url)} answered {response.status_code}: {body}")
    return response


async def probe_health_path(config: ServerConfig) -> None:
    """GET the health path; raise :class:`ServerUnreachable` unless it answers 2xx."""
    if config.health_url is not None:
        await _get(config, config.health_url, "health probe", missing=HealthPathMissing)


async def call_tool(
    config: ServerConfig,
    name: str,
    arguments: dict[str, Any],
    *,
    timeout: float | None = None,
    progress: ProgressCallback | None = None,
) -> ToolCallOutcome:
    """Call one tool and return its typed result.

    Protocol-level tool errors come back as ``is_error=True``; transport failures raise
    (the catalog turns them into error results with a readable message): typed, see
    :func:`on_session`. ``progress`` receives the server's progress notifications for this call
    (MCP servers only; a REST tool API has none).
    """
    started = time.perf_counter()
    if config.protocol == "rest":
        return await _rest_call_tool(config, name, arguments, timeout or config.call_timeout, started)
    limit = timeout or config.call_timeout
    relayed = _in_caller_loop(progress)  # here, in the caller's loop; the call runs on the pool's

    async def call(client: Client) -> mcp_types.CallToolResult:
        result = await client.call_tool(
            name, arguments, read_timeout_seconds=limit, progress_callback=relayed
        )
        if _result_chars(result) > LARGE_RESULT_CHARS:
            # The SDK's message loops keep the last message they handled referenced until the next
            # one arrives; on a kept session that would pin a huge result for as long as the
            # session idles. A ping replaces it.
            with contextlib.suppress(Exception):
                await client.send_ping()
        return result

    # Waiting for a turn and opening the session count against the call's own limit, plus the
    # connect timeout (a first call opens the session).
    result = await on_session(config, call, timeout=limit + config.connect_timeout)
    outcome = ToolCallOutcome(
        content=[c.model_dump(by_alias=True, exclude_none=True) for c in result.content],
        structured_content=result.structured_content,
        is_error=bool(result.is_error),
        duration_ms=(time.perf_counter() - started) * 1000,
    )
    if outcome.is_error:
        outcome.error = outcome.text() or f"{name} reported an error"
    return outcome


# A result this large (characters of text or base64 data) is flushed out of the kept session.
LARGE_RESULT_CHARS = 1_000_000


def _result_chars(result: mcp_types.CallToolResult) -> int:
    return sum(len(getattr(item, "text", "") or getattr(item, "data", "") or "") for item in result.content)


def _in_caller_loop(progress: ProgressCallback | None) -> ProgressCallback | None:
    """``progress`` run on the loop of the caller (the session's notifications arrive on the pool's
    loop; a chat consumer's callback must run on daphne's), awaited so their order is kept."""
    if progress is None:
        return None
    caller = asyncio.get_running_loop()

    async def relay(value: float, total: float | None, message: str | None) -> None:
        future = asyncio.run_coroutine_threadsafe(_awaited(progress(value, total, message)), caller)
        await asyncio.wrap_future(future)

    return cast(ProgressCallback, relay)


async def _awaited(result: Awaitable[None]) -> None:
    await result


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


async def _rest_list_tools(config: ServerConfig) -> ToolListing:
    url = config.endpoint.rstrip("/") + "/tools"
    response = await _get(config, url, "tool list")
    try:
        entries = response.json()["tools"]
        tools = [_rest_tool(e) for e in entries if e.get("available", True)]
        cut = ""
        if len(tools) > MAX_TOOLS_PER_SERVER:
            cut = f"the tool list was cut at {MAX_TOOLS_PER_SERVER} of {len(tools)} tools (netops' limit per server)"
        return ToolListing(tools[:MAX_TOOLS_PER_SERVER], cut)
    except (ValueError, KeyError, TypeError) as exc:
        raise ServerUnreachable(
            f"GET {safe_url(url)} did not return a tool list ({type(exc).__name__})"
        ) from None


async def _rest_call_tool(
    config: ServerConfig, name: str, arguments: dict[str, Any], timeout: float, started: float
) -> ToolCallOutcome:
    url = f"{config.endpoint.rstrip('/')}/tools/{name}"
    config.check_headers()
    async with httpx.AsyncClient(timeout=timeout, headers=config.headers) as http:
        try:
            response = await http.post(url, json=arguments)
        except httpx.TimeoutException:
            raise TimeoutError(f"{name} on {config.name} did not answer within {timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise ServerUnreachable(describe_transport_error(exc, "POST", url)) from None
    duration_ms = (time.perf_counter() - started) * 1000
    if response.status_code in (401, 403):
        # The tool API refused netops' key: the server's answer, not the tool's.
        refused = refusal_error(config, response.status_code, None)
        assert refused is not None
        raise refused
    try:
        body = response.json()
    except ValueError:
        # Not JSON: keep a bounded, redacted summary (the catalog redacts and caps results again).
        text = answer_summary(response, secrets=config.secret_values())
        body = {"error": text or f"HTTP {response.status_code}"}
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
    retry: str | None = None
    if response.status_code == 429:
        retry = response.headers.get("Retry-After")
        retry = retry[:40] if retry and not unsafe_header_value(retry) else None
        message = (
            f"rate limited by {config.name}" + (f"; retry after {retry} s" if retry else "") + f": {message}"
        )
        return _failed(message, duration_ms, status=429, failure="rate_limited", retry_after=retry)
    if response.status_code >= 500:
        # The tool API itself failed (a proxy's error page, a crash): the server's answer, not the
        # tool's own error, so the faces answer 502 rather than 422.
        message = f"{config.name} answered HTTP {response.status_code}: {message}"
        return _failed(message, duration_ms, status=502, failure="server_error")
    return _failed(message, duration_ms)


def _failed(message: str, duration_ms: float, **typed: Any) -> ToolCallOutcome:
    """An error outcome whose text is ``message``; ``typed``: status, failure, retry_after."""
    return ToolCallOutcome(
        content=[{"type": "text", "text": message}],
        structured_content=None,
        is_error=True,
        duration_ms=duration_ms,
        error=message,
        **typed,
    )


def _json_text(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, default=str)
