"""Long-lived MCP sessions: one per server per process, owned by one background event loop.

Django-free like :mod:`registry.connections`, and testable alone. Opening an MCP session costs a
connect, a handshake and — for stdio — a new child process (seconds for Node or Python servers);
netops used to pay that on every call. Here:

- a session is opened on first use and kept; calls share it (MCP multiplexes requests);
- the sessions live on one event loop in a daemon thread (an MCP client is bound to the loop and
  the task that opened it); callers in any loop (daphne's, a worker's ``async_to_sync``, a
  command's ``asyncio.run``) submit an operation and await it; cancelling the caller cancels the
  operation in the pool (a stopped chat run stops its tool call);
- a server's concurrent operations are bounded (``max_concurrency``); more wait their turn;
- a session idle for ``idle_seconds`` is closed (for stdio: the child exits); so is a session whose
  server's configuration changed (an edited URL, command or rotated secret opens a new one), and
  every session at exit (``atexit``); a child whose parent died sees its stdin close and exits;
- a broken session is dropped and reopened: an operation that fails because the connection broke
  (not because the server answered an error) is retried once on a new session; opening again after
  failures waits an exponential backoff (tool calls fail fast meanwhile; health checks always try).
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import httpx
import httpx2

logger = logging.getLogger(__name__)

T = TypeVar("T")

# An operation on an open session: given the client (and the error-typing of its connection), do
# one thing. It runs on the pool's loop.
Operation = Callable[[Any], Awaitable[T]]
# Opens a session: an async context manager factory yielding a client (connections._open_connection).
Opener = Callable[[Any], Any]


class ConnectionBroken(Exception):
    """An operation found its connection closed (the server exited, the stream ended)."""


# Failures that mean the connection itself broke (nothing reached the server, or the session is
# gone), so a retry on a new session cannot run a tool twice.
BROKEN_CONNECTION: tuple[type[BaseException], ...] = (
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
    BrokenPipeError,
    ConnectionResetError,
    httpx.ConnectError,
    httpx2.ConnectError,
    ConnectionBroken,
)


def broken_connection(exc: BaseException) -> bool:
    """Whether ``exc`` (or, for an exception group, any exception in it) is a broken connection."""
    if isinstance(exc, BaseExceptionGroup):
        return any(broken_connection(inner) for inner in exc.exceptions)
    return isinstance(exc, BROKEN_CONNECTION)


class SessionUnavailable(Exception):
    """No session could be opened (within backoff, or the pool is shutting down)."""


@dataclass
class _Session:
    key: str
    fingerprint: str
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    client: Any = None
    error: BaseException | None = None
    owner: asyncio.Task[None] | None = None
    in_flight: int = 0
    last_used: float = field(default_factory=time.monotonic)

    @property
    def alive(self) -> bool:
        return (
            self.client is not None
            and self.owner is not None
            and not self.owner.done()
            and not self.closing.is_set()
        )


@dataclass
class _Server:
    """Per server: its current session, the concurrency bound and the reconnect backoff."""

    semaphore: asyncio.Semaphore
    session: _Session | None = None
    failures: int = 0
    retry_at: float = 0.0
    opening: asyncio.Lock = field(default_factory=asyncio.Lock)


def config_fingerprint(config: Any) -> str:
    """A digest of everything that decides where and how to connect (secrets included, in memory
    only: the digest is compared, never shown)."""
    parts = [
        config.protocol,
        config.endpoint,
        config.command,
        "\0".join(config.args),
        repr(sorted(config.env.items())),
        repr(sorted(config.headers.items())),
        repr(config.connect_timeout),
    ]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


class SessionPool:
    """The process's MCP sessions. Use :func:`pool`; tests may build their own."""

    def __init__(
        self,
        *,
        idle_seconds: float = 300.0,
        max_concurrency: int = 8,
        backoff_base: float = 0.5,
        backoff_max: float = 15.0,
    ) -> None:
        self.idle_seconds = idle_seconds
        self.max_concurrency = max_concurrency
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._start_lock = threading.Lock()
        self._servers: dict[str, _Server] = {}
        self._closed = False
        self._reaper: asyncio.Task[None] | None = None

    # --- the loop ---------------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._closed:
                raise SessionUnavailable("the MCP session pool is shut down")
            if self._loop is None or self._pid != os.getpid():  # first use, or a forked child
                self._servers = {}
                self._pid = os.getpid()
                loop = asyncio.new_event_loop()
                started = threading.Event()
                thread = threading.Thread(
                    target=self._run_loop, args=(loop, started), name="mcp-sessions", daemon=True
                )
                thread.start()
                started.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def _run_loop(self, loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        self._reaper = loop.create_task(self._reap_idle())
        loop.run_forever()

    async def _reap_idle(self) -> None:
        while True:
            await asyncio.sleep(max(0.05, min(self.idle_seconds / 4, 30.0)))
            now = time.monotonic()
            for server in list(self._servers.values()):
                session = server.session
                if (
                    session
                    and session.ready.is_set()
                    and session.in_flight == 0
                    and now - session.last_used >= self.idle_seconds
                ):
                    logger.info("mcp session closed (idle)", extra={"server": session.key})
                    self._drop(server, session)

    # --- public API ------------------------------------------------------------------------

    async def run(
        self,
        key: str,
        config: Any,
        opener: Opener,
        operation: Operation[T],
        *,
        timeout: float,
        respect_backoff: bool = True,
    ) -> T:
        """Run ``operation(client)`` on ``key``'s session (opened with ``opener(config)`` if needed).

        ``timeout`` bounds waiting for a turn, opening and the operation together. Awaitable from
        any event loop; cancelling the caller cancels the operation.
        """
        loop = self._ensure_loop()
        work = self._run(key, config, opener, operation, timeout, respect_backoff)
        future = asyncio.run_coroutine_threadsafe(work, loop)
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - always called from a coroutine
            current = None
        if current is loop:  # pragma: no cover - an operation calling the pool again
            raise RuntimeError("SessionPool.run called from its own loop")
        return await asyncio.wrap_future(future)

    def close(self, key: str) -> None:
        """Close ``key``'s session (its server was edited, disabled or deleted); thread-safe."""
        loop = self._loop
        if loop is None or self._pid != os.getpid() or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._close_key, key)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Close every session (children exit) and stop the loop; later calls are refused."""
        with self._start_lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = None
        if loop is None or self._pid != os.getpid() or loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self._close_all(), loop).result(timeout)
        except BaseException:  # best effort at exit; a second signal may interrupt it (children then see EOF)
            logger.warning("mcp sessions did not all close in time")
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout)

    def stats(self) -> dict[str, int]:
        """Open sessions and operations in flight (for tests and metrics)."""
        sessions = [s.session for s in self._servers.values() if s.session and s.session.alive]
        return {"sessions": len(sessions), "in_flight": sum(s.in_flight for s in sessions)}

    def open_keys(self) -> list[str]:
        return sorted(k for k, s in self._servers.items() if s.session and s.session.alive)

    # --- inside the loop -------------------------------------------------------------------

    async def _run(
        self,
        key: str,
        config: Any,
        opener: Opener,
        operation: Operation[T],
        timeout: float,
        respect_backoff: bool,
    ) -> T:
        server = self._servers.get(key)
        if server is None:
            server = self._servers[key] = _Server(asyncio.Semaphore(self.max_concurrency))
        async with asyncio.timeout(timeout), server.semaphore:
            for attempt in (1, 2):
                session, reused = await self._session(server, key, config, opener, respect_backoff)
                session.in_flight += 1
                try:
                    return await operation(session.client)
                except BaseException as exc:
                    if broken_connection(exc) or not session.alive:
                        self._drop(server, session)
                        if attempt == 1 and reused and broken_connection(exc):
                            logger.info("mcp session broken; reconnecting", extra={"server": key})
                            continue
                    raise
                finally:
                    session.in_flight -= 1
                    session.last_used = time.monotonic()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _session(
        self, server: _Server, key: str, config: Any, opener: Opener, respect_backoff: bool
    ) -> tuple[_Session, bool]:
        """The server's open session and whether it was open before (a reuse), opening one if needed."""
        fingerprint = config_fingerprint(config)
        async with server.opening:
            session = server.session
            if session is not None and session.fingerprint != fingerprint:
                logger.info("mcp session closed (server changed)", extra={"server": key})
                self._drop(server, session)
            elif session is not None and session.alive:
                return session, True
            elif session is not None:
                self._drop(server, session)
            wait = server.retry_at - time.monotonic()
            if respect_backoff and wait > 0:
                raise SessionUnavailable(
                    f"{key}: the last {server.failures} connection attempt(s) failed; "
                    f"next attempt in {wait:.1f} s"
                )
            session = _Session(key=key, fingerprint=fingerprint)
            # Registered before it is ready: a caller cancelled while waiting leaves it here, and
            # the next caller drops it (its owner then closes it) instead of leaking a child.
            server.session = session
            session.owner = asyncio.get_running_loop().create_task(
                self._own(session, config, opener), name=f"mcp-session:{key}"
            )
            await session.ready.wait()
            if session.error is not None or not session.alive:
                self._drop(server, session)
                server.failures += 1
                delay = min(self.backoff_max, self.backoff_base * 2 ** (server.failures - 1))
                server.retry_at = time.monotonic() + delay
                raise session.error or SessionUnavailable(f"{key}: the session closed while opening")
            server.failures, server.retry_at = 0, 0.0
            session.last_used = time.monotonic()
            logger.info("mcp session opened", extra={"server": key})
            return session, False

    async def _own(self, session: _Session, config: Any, opener: Opener) -> None:
        """Open the client, keep it until asked to close, and close it in this same task (the
        client's task groups and cancel scopes must be exited by the task that entered them)."""
        try:
            async with AsyncExitStack() as stack:
                async with asyncio.timeout(config.connect_timeout):
                    session.client = await stack.enter_async_context(opener(config))
                session.ready.set()
                await session.closing.wait()
        except BaseException as exc:  # the opener's error is the caller's to raise
            if not session.ready.is_set():
                session.error = exc if isinstance(exc, Exception) else SessionUnavailable(str(exc))
            elif not isinstance(exc, asyncio.CancelledError):
                logger.info("mcp session ended", extra={"server": session.key, "error": type(exc).__name__})
        finally:
            session.client = None
            session.ready.set()

    def _drop(self, server: _Server, session: _Session) -> None:
        if server.session is session:
            server.session = None
        session.closing.set()

    def _close_key(self, key: str) -> None:
        server = self._servers.get(key)
        if server is not None and server.session is not None:
            logger.info("mcp session closed (server edited or removed)", extra={"server": key})
            self._drop(server, server.session)

    async def _close_all(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        owners = []
        for server in self._servers.values():
            if server.session is not None:
                owners.append(server.session.owner)
                self._drop(server, server.session)
        waiting = [o for o in owners if o is not None]
        if waiting:
            await asyncio.wait(waiting, timeout=4)


_pool: SessionPool | None = None
_pool_lock = threading.Lock()


def pool() -> SessionPool:
    """The process-wide pool (created with :func:`configure`'s settings on first use)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = SessionPool(**_settings)
            atexit.register(_pool.shutdown)
        return _pool


_settings: dict[str, Any] = {}


def configure(**settings: Any) -> None:
    """Set the pool's parameters (``idle_seconds``, ``max_concurrency``) before its first use."""
    _settings.update(settings)
    if _pool is not None:
        for name, value in settings.items():
            setattr(_pool, name, value)
