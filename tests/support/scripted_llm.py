"""A scripted, OpenAI-compatible chat-completions server on loopback: the project's only LLM double.

Why a real server and not a mock of the SDK: netops talks to LLMs through the official ``openai``
SDK (3.x, on ``httpx2``). Bugs in an agent loop tend to live exactly where a mock would lie: SSE
framing, tool-call deltas that arrive in pieces and must be accumulated *by index*, the SDK's own
retries of 429/5xx, Azure's URL/query/header layout, a stream that dies half-way, and a "stop" button
that must really close the upstream HTTP stream. :class:`ScriptedLLM` therefore runs a Starlette app
under uvicorn (h11) in a background thread with its own event loop, speaks the real wire protocol
over real TCP, and the real SDK is pointed at it::

    with ScriptedLLM(api_key="sk-test") as llm:
        llm.enqueue(Turn.tool_calls([ToolCallSpec("add", {"a": 1, "b": 2})]), Turn.text("3"))
        client = openai.AsyncOpenAI(base_url=llm.base_url, api_key="sk-test")
        ...
        assert llm.requests[1].body["messages"][-1]["role"] == "tool"

Endpoints
    ``POST /v1/chat/completions`` (OpenAI and OpenAI-compatible; ``Authorization: Bearer KEY``) and
    ``POST /openai/deployments/{deployment}/chat/completions?api-version=...`` (Azure; ``api-key: KEY``).
    Anything else gets OpenAI's ``Invalid URL (METHOD /path)`` 404 JSON.

Scripting
    Every request that passes authentication and validation consumes one :class:`Turn`: first from the
    FIFO filled by :meth:`ScriptedLLM.enqueue`, else from ``responder(body)``, else ``Turn.text("OK")``.
    Rejections by the server itself (401 wrong key, 400 missing ``api-version``/``model``/``messages``,
    404 unknown deployment or URL) do not consume a turn, as they are not the model's doing.

Retries (important when scripting errors)
    The SDK retries 408/409/429/5xx and connection errors ``max_retries`` times (default 2), so one
    ``create()`` call can be ``max_retries + 1`` HTTP requests and each attempt consumes a turn. Either
    enqueue one error turn per attempt or use ``Turn.error(..., repeat=k)``, which stays at the head of
    the queue for ``k`` requests. The SDK sends ``x-stainless-retry-count: 0, 1, 2...``, visible in
    :attr:`ScriptedLLM.requests`. ``Retry-After: 0`` is *not* "retry now" for the SDK: it only honours
    ``0 < Retry-After <= 120`` and otherwise falls back to exponential backoff (0.5 s, 1 s, ... with up
    to 25 % jitter). A fractional value such as ``retry_after=0.01`` is honoured (the SDK parses floats).

A cut stream
    :meth:`Turn.cut` sends the response head and some chunks (chunked transfer encoding), then the
    handler returns without finishing the response, so uvicorn closes the TCP connection with no
    terminating zero-length chunk and no ``data: [DONE]``. The SDK's HTTP stack (httpcore2/h11) raises
    ``httpx2.RemoteProtocolError`` ("peer closed connection without sending complete message body:
    incomplete chunked read") while iterating, and ``openai.AsyncStream._iter_events`` wraps it as
    **``openai.APIConnectionError``** (its ``__cause__`` is the ``RemoteProtocolError``). It is raised
    from ``async for`` *after* the chunks already received were yielded; the SDK does not retry it,
    because the HTTP response (status 200) had already been returned. uvicorn logs "ASGI callable
    returned without completing response." at ERROR level for it; that is expected.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import math
import secrets
import socket
import string
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, NamedTuple, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

__all__ = [
    "RecordedRequest",
    "Responder",
    "ScriptedLLM",
    "SentChunk",
    "ToolCallSpec",
    "Turn",
    "TurnKind",
]

log = logging.getLogger(__name__)

TurnKind = Literal["text", "tool_calls", "error", "cut", "hang"]
Flavor = Literal["openai", "azure", "unknown"]
Responder = Callable[[dict[str, Any]], "Turn | None"]

_ALNUM = string.ascii_letters + string.digits
_DEFAULT_CHUNK_SIZE = 4  # characters per content delta: roughly one token, like the real API


def _random_id(prefix: str, length: int) -> str:
    """IDs shaped like OpenAI's (``chatcmpl-`` + 29 chars, ``call_`` + 24 chars)."""
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def _dumps(payload: object) -> str:
    """Compact JSON, as OpenAI puts it on the wire (``{"a":1}``, no spaces)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def _split_text(text: str, chunk_size: int) -> tuple[str, ...]:
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    return tuple(text[i : i + chunk_size] for i in range(0, len(text), chunk_size))


def _split_even(text: str, parts: int) -> list[str]:
    """Split ``text`` into ``parts`` non-empty pieces of near-equal length (fewer if it is shorter)."""
    count = max(1, min(parts, len(text)))
    size, extra = divmod(len(text), count)
    pieces: list[str] = []
    start = 0
    for i in range(count):
        end = start + size + (1 if i < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def _estimate_tokens(text: str) -> int:
    """A stable ~4-characters-per-token estimate, so usage numbers are plausible and deterministic."""
    return math.ceil(len(text) / 4) if text else 0


# --------------------------------------------------------------------------------------------------
# Script vocabulary
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolCallSpec:
    """One function call the scripted model makes.

    ``arguments`` is a dict (sent as compact JSON, like models emit it) or a ready string, which lets a
    test send deliberately malformed JSON. ``id=None`` means a fresh ``call_...`` id per response, as
    the real API does (so a retried request gets a different id).
    """

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    @property
    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else _dumps(self.arguments)


@dataclass(frozen=True)
class Turn:
    """What the scripted model does for one HTTP request. Build it with the factory classmethods.

    Non-streaming requests (``stream`` false/absent) get the same content as one ``chat.completion``
    JSON; ``cut`` then sends a truncated body (the SDK sees a connection error and *retries* it) and
    ``hang`` sends nothing until the client gives up.
    """

    kind: TurnKind
    chunks: tuple[str, ...] = ()
    delay: float = 0.0
    calls: tuple[ToolCallSpec, ...] = ()
    split: int = 3
    interleave: bool = False
    status: int = 200
    message: str = ""
    retry_after: float | None = None
    error_type: str | None = None
    error_code: str | None = None
    repeat: int = 1
    after_chunks: int = 0

    def __post_init__(self) -> None:
        if self.delay < 0:
            raise ValueError("delay must be >= 0")
        if self.repeat < 1:
            raise ValueError("repeat must be >= 1")
        if self.split < 1:
            raise ValueError("split must be >= 1")
        if self.kind in ("cut", "hang") and not 0 <= self.after_chunks <= len(self.chunks):
            raise ValueError(
                f"after_chunks={self.after_chunks} but the text has only {len(self.chunks)} chunks"
            )

    @property
    def content(self) -> str:
        """The full assistant text (for ``tool_calls``: the text streamed before the calls)."""
        return "".join(self.chunks)

    # -- factories ---------------------------------------------------------------------------------

    @classmethod
    def text(cls, text: str, chunk_size: int = _DEFAULT_CHUNK_SIZE, delay: float = 0.0) -> Turn:
        """Stream ``text`` in ``chunk_size``-character content deltas, ``delay`` seconds apart."""
        return cls(kind="text", chunks=_split_text(text, chunk_size), delay=delay)

    @classmethod
    def text_chunks(cls, chunks: Sequence[str], delay: float = 0.0) -> Turn:
        """Stream exactly these content deltas (e.g. to split inside a multi-byte character or word)."""
        return cls(kind="text", chunks=tuple(chunks), delay=delay)

    @classmethod
    def tool_calls(
        cls,
        calls: Sequence[ToolCallSpec],
        split: int = 3,
        text_before: str = "",
        interleave: bool = False,
        delay: float = 0.0,
    ) -> Turn:
        """Stream tool calls as real deltas: per call a head delta (index, id, type, name, ``""``
        arguments), then the JSON arguments in ``split`` pieces. ``interleave=True`` round-robins the
        deltas of parallel calls (call 0 head, call 1 head, call 0 piece 1, ...) so only a client that
        accumulates by ``index`` reassembles them; finish_reason is ``tool_calls``."""
        if not calls:
            raise ValueError("tool_calls needs at least one ToolCallSpec")
        return cls(
            kind="tool_calls",
            chunks=_split_text(text_before, _DEFAULT_CHUNK_SIZE),
            calls=tuple(calls),
            split=split,
            interleave=interleave,
            delay=delay,
        )

    @classmethod
    def error(
        cls,
        status: int,
        message: str | None = None,
        retry_after: float | None = None,
        repeat: int = 1,
        error_type: str | None = None,
        code: str | None = None,
    ) -> Turn:
        """Answer with HTTP ``status`` and OpenAI's error JSON ``{"error": {message, type, param, code}}``.

        Defaults per status: 429 -> type/code ``rate_limit_exceeded`` (the live API uses type
        ``requests``/``tokens``; pass ``error_type`` to mimic that), 5xx -> ``server_error``, 401 ->
        ``invalid_request_error``/``invalid_api_key``. ``retry_after`` sets the ``Retry-After`` header.
        ``repeat=k`` serves this error for the next ``k`` requests (one per SDK retry attempt).
        """
        if status < 400:
            raise ValueError("an error turn needs a 4xx/5xx status")
        return cls(
            kind="error",
            status=status,
            message=message or _DEFAULT_ERROR_MESSAGES.get(status, f"Scripted error {status}"),
            retry_after=retry_after,
            repeat=repeat,
            error_type=error_type,
            error_code=code,
        )

    @classmethod
    def cut(
        cls,
        after_chunks: int,
        text: str = "This answer is going to be cut off in the middle of a sentence",
        chunk_size: int = _DEFAULT_CHUNK_SIZE,
        delay: float = 0.0,
    ) -> Turn:
        """Send the role chunk and ``after_chunks`` content chunks, then drop the TCP connection
        without ``[DONE]`` or the chunked-encoding terminator. The SDK raises
        ``openai.APIConnectionError`` (cause ``httpx2.RemoteProtocolError``) from the stream iterator."""
        return cls(kind="cut", chunks=_split_text(text, chunk_size), after_chunks=after_chunks, delay=delay)

    @classmethod
    def hang_after(
        cls,
        n_chunks: int,
        text: str = "This answer never finishes because the model keeps thinking",
        chunk_size: int = _DEFAULT_CHUNK_SIZE,
        delay: float = 0.0,
    ) -> Turn:
        """Send the role chunk and ``n_chunks`` content chunks, then keep the response open until the
        client disconnects (counted in :attr:`ScriptedLLM.disconnects`) or the server stops."""
        return cls(kind="hang", chunks=_split_text(text, chunk_size), after_chunks=n_chunks, delay=delay)


_DEFAULT_ERROR_MESSAGES: dict[int, str] = {
    400: "Invalid request.",
    401: "Incorrect API key provided.",
    403: "You are not allowed to access this resource.",
    404: "The model does not exist or you do not have access to it.",
    408: "Request timed out.",
    429: "Rate limit reached for requests. Please try again later.",
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The engine is currently overloaded, please try again later.",
}

_DEFAULT_TURN = Turn.text("OK")


# --------------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as the server saw it. ``headers`` has lower-case names; ``received_at`` is
    ``time.monotonic()`` (same clock as :attr:`ScriptedLLM.sent_chunks`); ``body`` is ``{}`` when the
    body was not a JSON object."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: dict[str, Any]
    received_at: float
    method: str = "POST"


class SentChunk(NamedTuple):
    """One ``chat.completion.chunk`` SSE event as sent: index into ``requests``, ``time.monotonic()``
    right after it was written to the socket, and its content delta text (``""`` for role, tool-call,
    finish and usage chunks)."""

    request_index: int
    at: float
    text: str


@dataclass(eq=False)
class _Exchange:
    """Per-request state of one response being produced on the server loop."""

    request_index: int
    flavor: Flavor
    model: str
    include_usage: bool
    obfuscate: bool
    prompt_tokens: int
    completion_id: str = field(default_factory=lambda: _random_id("chatcmpl-", 29))
    created: int = field(default_factory=lambda: int(time.time()))
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    finished: bool = False
    aborted: bool = False


@dataclass
class _Queued:
    turn: Turn
    remaining: int


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------


class _Endpoint:
    """A raw ASGI endpoint (Starlette routes class instances as ASGI apps), because scripted turns
    need the bare ``receive``/``send`` to pace chunks, watch for disconnects and cut connections."""

    def __init__(self, llm: ScriptedLLM, flavor: Flavor) -> None:
        self._llm = llm
        self._flavor = flavor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._llm._handle(self._flavor, scope, receive, send)


class ScriptedLLM:
    """Scripted OpenAI/Azure OpenAI chat-completions server on ``127.0.0.1:<free port>``.

    Use it as ``with ScriptedLLM(...) as llm:`` or ``llm.start()`` / ``llm.stop()``. All public methods
    and properties are thread-safe: the server runs in its own thread and event loop, tests enqueue and
    inspect from theirs. Properties return snapshots (copies).

    Args:
        api_key: when set, requests without exactly this key (``Authorization: Bearer`` on ``/v1``,
            ``api-key`` on Azure) get 401 ``invalid_api_key``.
        deployments: when set, Azure requests for any other deployment get Azure's 404
            ``DeploymentNotFound``.
        responder: ``responder(body) -> Turn | None`` decides when the queue is empty (e.g. "if the last
            message is a tool result, answer with text"). ``None`` falls back to ``Turn.text("OK")``.
            It runs synchronously on the server thread, so keep it quick and non-blocking; if it
            raises, the request gets a 500 ``server_error`` and the exception lands in
            :attr:`handler_errors`.
        azure_prompt_filter_chunk: make Azure streams start like the real service with content filtering
            on: a first chunk with ``choices: []`` and ``prompt_filter_results`` (and
            ``content_filter_results`` in every choice). Off by default.
        obfuscation: add OpenAI's ``obfuscation`` padding field to ``/v1`` stream chunks unless the
            request sets ``stream_options.include_obfuscation: false`` (the live API does this).
        echo_key: hostile mode for the security tests: in every turn's error message and streamed
            text, ``{key}``, ``{key_b64}``, ``{key_url}`` and ``{key_hex}`` become the API key this
            request carried (plain, base64, URL-encoded, hex), as an endpoint echoing it would send.
            Text is re-split into chunks of the turn's first chunk length after the substitution,
            so the key spans chunk boundaries.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        deployments: Iterable[str] | None = None,
        responder: Responder | None = None,
        azure_prompt_filter_chunk: bool = False,
        obfuscation: bool = True,
        echo_key: bool = False,
    ) -> None:
        self._api_key = api_key
        self._echo_key = echo_key
        self._deployments = frozenset(deployments) if deployments is not None else None
        self._responder = responder
        self._azure_prompt_filter_chunk = azure_prompt_filter_chunk
        self._obfuscation = obfuscation
        self._fingerprint = "fp_" + secrets.token_hex(5)

        self._lock = threading.RLock()
        self._queue: deque[_Queued] = deque()
        self._requests: list[RecordedRequest] = []
        self._sent_chunks: list[SentChunk] = []
        self._disconnects = 0
        self._handler_errors: list[BaseException] = []

        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._active: set[_Exchange] = set()  # only touched on the server loop
        self._port: int | None = None
        self._startup_error: BaseException | None = None

        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", _Endpoint(self, "openai"), methods=["POST"]),
                Route(
                    "/openai/deployments/{deployment}/chat/completions",
                    _Endpoint(self, "azure"),
                    methods=["POST"],
                ),
                Route("/{path:path}", _Endpoint(self, "unknown")),
            ]
        )

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind a free loopback port and serve in a daemon thread; returns once it accepts requests."""
        with self._lock:
            if self._thread is not None:
                raise RuntimeError("ScriptedLLM is already running")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))  # bound before the thread starts: no free-port race
            self._port = int(sock.getsockname()[1])
            config = uvicorn.Config(
                self.app,
                http="h11",
                ws="none",
                lifespan="off",
                log_config=None,  # do not reconfigure the test process's logging
                access_log=False,
                timeout_graceful_shutdown=3,
            )
            self._server = uvicorn.Server(config)
            self._startup_error = None
            self._thread = threading.Thread(
                target=self._run, args=(self._server, sock), name=f"ScriptedLLM:{self._port}", daemon=True
            )
            self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"ScriptedLLM did not start: {self._startup_error!r}")
            time.sleep(0.005)
        return self

    def _run(self, server: uvicorn.Server, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        try:
            loop.run_until_complete(server.serve(sockets=[sock]))
        except BaseException as exc:  # surfaced by start(); a daemon thread must not die silently
            self._startup_error = exc
            log.exception("ScriptedLLM server crashed")
        finally:
            sock.close()
            loop.close()

    def stop(self) -> None:
        """Abort hanging responses, shut uvicorn down and join its thread. Idempotent."""
        with self._lock:
            thread, server, loop = self._thread, self._server, self._loop
            self._thread = None
        if thread is None or server is None:
            return
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closed meanwhile
                loop.call_soon_threadsafe(self._abort_active)
        server.should_exit = True
        thread.join(timeout=15)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        self._loop = None

    def _abort_active(self) -> None:
        for exchange in list(self._active):
            exchange.aborted = True
            exchange.gone.set()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("ScriptedLLM is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """For ``openai.AsyncOpenAI(base_url=...)`` and other OpenAI-compatible clients."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def azure_endpoint(self) -> str:
        """For ``openai.AsyncAzureOpenAI(azure_endpoint=...)``."""
        return f"http://127.0.0.1:{self.port}/"

    # -- scripting and inspection ------------------------------------------------------------------

    def enqueue(self, *turns: Turn) -> None:
        """Append turns to the FIFO; each request that reaches the model pops one (see ``repeat``)."""
        with self._lock:
            self._queue.extend(_Queued(turn, turn.repeat) for turn in turns)

    @property
    def pending(self) -> int:
        """Requests the queue will still answer (a ``repeat=k`` turn counts ``k``)."""
        with self._lock:
            return sum(item.remaining for item in self._queue)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def sent_chunks(self) -> list[SentChunk]:
        with self._lock:
            return list(self._sent_chunks)

    @property
    def disconnects(self) -> int:
        """Streams the *client* closed before the server finished them (hang turns, early close)."""
        with self._lock:
            return self._disconnects

    @property
    def handler_errors(self) -> list[BaseException]:
        """Exceptions raised by ``responder`` (answered as 500 ``server_error``)."""
        with self._lock:
            return list(self._handler_errors)

    def reset(self) -> None:
        """Forget queued turns and all records."""
        with self._lock:
            self._queue.clear()
            self._requests.clear()
            self._sent_chunks.clear()
            self._disconnects = 0
            self._handler_errors.clear()

    async def wait_for_disconnects(self, count: int = 1, timeout: float = 2.0) -> int:
        """Poll (without blocking the caller's event loop) until ``disconnects >= count``."""
        deadline = time.monotonic() + timeout
        while self.disconnects < count and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.disconnects

    def _next_turn(self, body: dict[str, Any]) -> Turn:
        with self._lock:
            if self._queue:
                head = self._queue[0]
                head.remaining -= 1
                if head.remaining <= 0:
                    self._queue.popleft()
                return head.turn
        if self._responder is not None:
            turn = self._responder(body)
            if turn is not None:
                return turn
        return _DEFAULT_TURN

    # -- HTTP handling -----------------------------------------------------------------------------

    async def _handle(self, flavor: Flavor, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        raw = await request.body()
        try:
            parsed: Any = json.loads(raw) if raw else {}
        except ValueError:
            parsed = None
        body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        recorded = RecordedRequest(
            path=request.url.path,
            query=dict(request.query_params),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=body,
            received_at=time.monotonic(),
            method=request.method,
        )
        with self._lock:
            self._requests.append(recorded)
            index = len(self._requests) - 1

        rejection = self._reject(flavor, recorded, parsed, scope)
        if rejection is not None:
            status, payload, headers = rejection
            await self._send_json(send, status, payload, headers)
            return

        try:
            turn = self._next_turn(body)
        except Exception as exc:
            log.exception("ScriptedLLM responder raised")
            with self._lock:
                self._handler_errors.append(exc)
            turn = Turn.error(500, f"ScriptedLLM responder raised {exc!r}")

        if self._echo_key:
            turn = _echo_key(turn, recorded)
        stream = bool(body.get("stream"))
        stream_options = body.get("stream_options") or {}
        exchange = _Exchange(
            request_index=index,
            flavor=flavor,
            model=str(body.get("model") or scope.get("path_params", {}).get("deployment", "")),
            include_usage=bool(stream_options.get("include_usage")),
            obfuscate=self._obfuscation
            and flavor == "openai"
            and stream_options.get("include_obfuscation", True) is not False,
            prompt_tokens=_estimate_tokens(_dumps(body.get("messages", []))),
        )

        if turn.kind == "error":
            await self._send_json(send, turn.status, self._error_payload(turn), self._error_headers(turn))
        elif stream:
            await self._stream(turn, exchange, receive, send)
        else:
            await self._complete(turn, exchange, receive, send)

    def _reject(
        self, flavor: Flavor, req: RecordedRequest, parsed: Any, scope: Scope
    ) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        """Server-side rejections that happen before the model is involved (no turn consumed)."""
        if flavor == "unknown":
            return 404, _openai_error(f"Invalid URL ({req.method} {req.path})", "invalid_request_error"), {}
        if self._api_key is not None:
            if flavor == "openai":
                auth = req.headers.get("authorization", "")
                ok = auth == f"Bearer {self._api_key}"
                provided = auth.removeprefix("Bearer ").strip()
            else:
                provided = req.headers.get("api-key", "")
                ok = provided == self._api_key
            if not ok:
                message = (
                    f"Incorrect API key provided: {_mask(provided)}. You can find your API key at "
                    "https://platform.openai.com/account/api-keys."
                    if provided
                    else "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
                )
                return 401, _openai_error(message, "invalid_request_error", code="invalid_api_key"), {}
        if flavor == "azure":
            if not req.query.get("api-version"):
                return (
                    400,
                    {
                        "error": {
                            "code": "MissingApiVersionParameter",
                            "message": "The api-version query parameter (?api-version=) is required for all requests.",
                        }
                    },
                    {},
                )
            deployment = scope.get("path_params", {}).get("deployment", "")
            if self._deployments is not None and deployment not in self._deployments:
                return (
                    404,
                    {
                        "error": {
                            "code": "DeploymentNotFound",
                            "message": "The API deployment for this resource does not exist. If you created "
                            "the deployment within the last 5 minutes, please wait a moment and try again.",
                        }
                    },
                    {},
                )
        if not isinstance(parsed, dict):
            return (
                400,
                _openai_error("We could not parse the JSON body of your request.", "invalid_request_error"),
                {},
            )
        if flavor == "openai" and not parsed.get("model"):
            return (
                400,
                _openai_error(
                    "you must provide a model parameter", "invalid_request_error", param=None, code=None
                ),
                {},
            )
        if not isinstance(parsed.get("messages"), list):
            return (
                400,
                _openai_error(
                    "Missing required parameter: 'messages'.",
                    "invalid_request_error",
                    param="messages",
                    code="missing_required_parameter",
                ),
                {},
            )
        if parsed.get("stream_options") is not None and not parsed.get("stream"):
            return (
                400,
                _openai_error(
                    "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                    "invalid_request_error",
                    param="stream_options",
                    code=None,
                ),
                {},
            )
        return None

    @staticmethod
    def _error_payload(turn: Turn) -> dict[str, Any]:
        status = turn.status
        if status == 429:
            kind, code = "rate_limit_exceeded", "rate_limit_exceeded"
        elif status >= 500:
            kind, code = "server_error", None
        elif status == 401:
            kind, code = "invalid_request_error", "invalid_api_key"
        else:
            kind, code = "invalid_request_error", None
        return _openai_error(
            turn.message,
            turn.error_type or kind,
            code=turn.error_code if turn.error_code is not None else code,
        )

    @staticmethod
    def _error_headers(turn: Turn) -> dict[str, str]:
        if turn.retry_after is None:
            return {}
        value = turn.retry_after
        return {"retry-after": str(int(value)) if float(value).is_integer() else str(value)}

    async def _send_json(self, send: Send, status: int, payload: object, headers: dict[str, str]) -> None:
        body = _dumps(payload).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", _random_id("req_", 32).encode()),
                    *((name.encode(), value.encode()) for name, value in headers.items()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})

    # -- streaming -------------------------------------------------------------------------------

    async def _stream(self, turn: Turn, ex: _Exchange, receive: Receive, send: Send) -> None:
        """Send SSE events with the turn's pacing while watching for the client to go away."""
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    (b"cache-control", b"no-cache, must-revalidate"),
                    (b"x-request-id", _random_id("req_", 32).encode()),
                ],
            }
        )
        self._active.add(ex)
        watcher = asyncio.create_task(self._watch_disconnect(ex, receive))
        try:
            for position, (payload, text) in enumerate(self._stream_events(turn, ex)):
                if (position and await self._pause(ex, turn.delay)) or ex.gone.is_set():
                    return
                await send({"type": "http.response.body", "body": _sse(payload), "more_body": True})
                with self._lock:
                    self._sent_chunks.append(SentChunk(ex.request_index, time.monotonic(), text))
            if turn.kind == "cut":
                return  # response left incomplete: uvicorn closes the connection mid-body
            if turn.kind == "hang":
                await ex.gone.wait()
                return
            if await self._pause(ex, turn.delay):
                return
            ex.finished = True
            await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
        finally:
            watcher.cancel()
            self._active.discard(ex)

    async def _watch_disconnect(self, ex: _Exchange, receive: Receive) -> None:
        """The body is already read, so the next ASGI message is ``http.disconnect``; uvicorn delivers
        it when the client closes the socket (or, harmlessly, once the response is complete)."""
        while True:
            message: Message = await receive()
            if message["type"] == "http.disconnect":
                if not ex.finished and not ex.aborted:
                    with self._lock:
                        self._disconnects += 1
                ex.gone.set()
                return

    @staticmethod
    async def _pause(ex: _Exchange, seconds: float) -> bool:
        """Sleep between chunks; True when the client went away (or the server stops) meanwhile."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return ex.gone.is_set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ex.gone.wait(), seconds)
        return ex.gone.is_set()

    def _chunk(
        self, ex: _Exchange, delta: dict[str, Any], finish_reason: str | None = None
    ) -> dict[str, Any]:
        choice: dict[str, Any] = {
            "index": 0,
            "delta": delta,
            "logprobs": None,
            "finish_reason": finish_reason,
        }
        if ex.flavor == "azure" and self._azure_prompt_filter_chunk:
            choice["content_filter_results"] = {} if finish_reason else _SAFE_FILTER_RESULTS
        return self._envelope(ex, [choice])

    def _envelope(self, ex: _Exchange, choices: list[dict[str, Any]]) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": ex.completion_id,
            "object": "chat.completion.chunk",
            "created": ex.created,
            "model": ex.model,
        }
        if ex.flavor == "openai":
            chunk["service_tier"] = "default"
        chunk["system_fingerprint"] = self._fingerprint
        chunk["choices"] = choices
        if ex.include_usage:
            chunk["usage"] = None
        if ex.obfuscate:
            chunk["obfuscation"] = secrets.token_urlsafe(6)[: secrets.randbelow(8) + 1]
        return chunk

    def _stream_events(self, turn: Turn, ex: _Exchange) -> list[tuple[dict[str, Any], str]]:
        """The ordered ``(chunk, content text)`` events of one streamed response, up to [DONE]."""
        events: list[tuple[dict[str, Any], str]] = []
        if ex.flavor == "azure" and self._azure_prompt_filter_chunk:
            events.append(
                (
                    {
                        "choices": [],
                        "created": 0,
                        "id": "",
                        "model": "",
                        "object": "",
                        "prompt_filter_results": [
                            {"prompt_index": 0, "content_filter_results": _SAFE_FILTER_RESULTS}
                        ],
                    },
                    "",
                )
            )
        content = turn.chunks[: turn.after_chunks] if turn.kind in ("cut", "hang") else turn.chunks
        role_with_text = turn.kind != "tool_calls" or bool(turn.chunks)
        if role_with_text:
            events.append((self._chunk(ex, {"role": "assistant", "content": "", "refusal": None}), ""))
            events.extend((self._chunk(ex, {"content": piece}), piece) for piece in content)
        if turn.kind in ("cut", "hang"):
            return events

        finish_reason = "stop"
        if turn.kind == "tool_calls":
            finish_reason = "tool_calls"
            for n, delta in enumerate(_tool_call_deltas(turn.calls, turn.split, turn.interleave)):
                chunk_delta: dict[str, Any] = {"tool_calls": [delta]}
                if n == 0 and not role_with_text:
                    chunk_delta = {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [delta],
                        "refusal": None,
                    }
                events.append((self._chunk(ex, chunk_delta), ""))
        events.append((self._chunk(ex, {}, finish_reason), ""))
        if ex.include_usage:
            usage_chunk = self._envelope(ex, [])
            usage_chunk["usage"] = _usage(ex.prompt_tokens, _completion_tokens(turn))
            events.append((usage_chunk, ""))
        return events

    # -- non-streaming -----------------------------------------------------------------------------

    async def _complete(self, turn: Turn, ex: _Exchange, receive: Receive, send: Send) -> None:
        """One ``chat.completion`` JSON; ``cut`` truncates it on the wire, ``hang`` never answers."""
        if turn.kind == "hang":
            self._active.add(ex)
            watcher = asyncio.create_task(self._watch_disconnect(ex, receive))
            try:
                await ex.gone.wait()
            finally:
                watcher.cancel()
                self._active.discard(ex)
            return
        message: dict[str, Any] = {
            "role": "assistant",
            "content": turn.content if (turn.chunks or turn.kind != "tool_calls") else None,
            "refusal": None,
            "annotations": [],
        }
        if turn.kind == "tool_calls":
            message["tool_calls"] = [
                {
                    "id": call.id or _random_id("call_", 24),
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_json},
                }
                for call in turn.calls
            ]
        completion = {
            "id": ex.completion_id,
            "object": "chat.completion",
            "created": ex.created,
            "model": ex.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": "tool_calls" if turn.kind == "tool_calls" else "stop",
                }
            ],
            "usage": _usage(ex.prompt_tokens, _completion_tokens(turn)),
            "service_tier": "default",
            "system_fingerprint": self._fingerprint,
        }
        if turn.kind != "cut":
            await self._send_json(send, 200, completion, {})
            return
        body = _dumps(completion).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})


_SAFE_FILTER_RESULTS: dict[str, Any] = {
    category: {"filtered": False, "severity": "safe"}
    for category in ("hate", "self_harm", "sexual", "violence")
}


def _openai_error(
    message: str, error_type: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def _echo_key(turn: Turn, request: RecordedRequest) -> Turn:
    """``turn`` with the key placeholders replaced by the key ``request`` carried (hostile mode)."""
    import base64
    from urllib.parse import quote

    key = request.headers.get("api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
    forms = {
        "{key}": key,
        "{key_b64}": base64.b64encode(key.encode()).decode(),
        "{key_url}": quote(key, safe=""),
        "{key_hex}": key.encode().hex(),
    }

    def fill(text: str) -> str:
        for placeholder, value in forms.items():
            text = text.replace(placeholder, value)
        return text

    size = len(turn.chunks[0]) if turn.chunks else _DEFAULT_CHUNK_SIZE
    chunks = _split_text(fill(turn.content), size) if turn.chunks else ()
    return dataclasses.replace(turn, message=fill(turn.message), chunks=chunks)


def _mask(key: str) -> str:
    return key[:3] + "*" * 8 + key[-4:] if len(key) > 8 else "*" * len(key)


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + _dumps(payload).encode() + b"\n\n"


def _completion_tokens(turn: Turn) -> int:
    return _estimate_tokens(turn.content) + sum(
        _estimate_tokens(c.name + c.arguments_json) for c in turn.calls
    )


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    """The usage object with the detail blocks the live API includes."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def _tool_call_deltas(calls: Sequence[ToolCallSpec], split: int, interleave: bool) -> list[dict[str, Any]]:
    """Per-call delta sequences (head, then argument pieces), sequential or round-robin interleaved."""
    per_call: list[list[dict[str, Any]]] = []
    for index, call in enumerate(calls):
        deltas: list[dict[str, Any]] = [
            {
                "index": index,
                "id": call.id or _random_id("call_", 24),
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
        ]
        deltas.extend(
            {"index": index, "function": {"arguments": piece}}
            for piece in _split_even(call.arguments_json, split)
        )
        per_call.append(deltas)
    if not interleave:
        return [delta for deltas in per_call for delta in deltas]
    ordered: list[dict[str, Any]] = []
    for step in range(max(len(deltas) for deltas in per_call)):
        ordered.extend(deltas[step] for deltas in per_call if step < len(deltas))
    return ordered
