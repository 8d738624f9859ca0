"""Health probes of tool servers, run concurrently, each bounded by its own timeout.

Django-free like :mod:`registry.connections`: takes configs, returns outcomes. Recording the
outcomes (and the no-flapping rule) is :func:`registry.services.mcp_servers_check_health`'s job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import httpx
import httpx2

from netops.redaction import sanitize
from registry.connections import (
    HealthPathMissing,
    ServerConfig,
    ServerUnreachable,
    ToolDefinition,
    describe_transport_error,
    list_tools,
    probe_health_path,
)


@dataclass
class ProbeResult:
    """One check of one server: ``ok`` with its tools, or the reason it failed."""

    ok: bool
    duration_ms: float
    tools: list[ToolDefinition] = field(default_factory=list)
    error: str = ""
    # What a good check noticed: a missing health path, a cut tool list (``degraded``).
    note: str = ""
    degraded: bool = False


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failure of a remote server, without the noise of wrapper groups.

    HTTP library errors are described by type and URL only (their text may quote the headers we
    sent); anything else is redacted of every secret this process holds. Callers still sanitise
    with the entry's own secrets before storing or returning the text.
    """
    if isinstance(exc, ServerUnreachable):
        return sanitize(str(exc))
    if isinstance(exc, BaseExceptionGroup):
        # anyio task groups wrap the real cause; show the innermost first error.
        return describe_error(exc.exceptions[0])
    if isinstance(exc, httpx.HTTPError | httpx2.HTTPError):
        try:
            method, url = exc.request.method, str(exc.request.url)
        except RuntimeError:  # raised before a request existed
            method, url = "request", ""
        return describe_transport_error(exc, method, url)
    if isinstance(exc, UnicodeError):
        return "the request could not be sent: a header or request value is not ASCII"
    text = str(exc) or type(exc).__name__
    return sanitize(f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text)


async def probe(config: ServerConfig) -> ProbeResult:
    """Talk to the server for real: probe the health path (http, rest), then list its tools."""
    started = time.perf_counter()
    notes: list[str] = []
    try:
        async with asyncio.timeout(config.connect_timeout):
            try:
                await probe_health_path(config)
            except HealthPathMissing as exc:
                # Reference MCP servers have no health route: the handshake below decides.
                notes.append(f"{exc}; the MCP handshake decides health")
            listing = await list_tools(config)
    except TimeoutError:
        return ProbeResult(
            ok=False,
            duration_ms=(time.perf_counter() - started) * 1000,
            error=f"no answer within {config.connect_timeout:g} s",
        )
    except Exception as exc:  # any failure of a remote server is a health result, not a crash
        return ProbeResult(
            ok=False, duration_ms=(time.perf_counter() - started) * 1000, error=describe_error(exc)
        )
    if listing.cut:
        notes.append(listing.cut)
    return ProbeResult(
        ok=True,
        duration_ms=(time.perf_counter() - started) * 1000,
        tools=listing.tools,
        note="; ".join(notes),
        degraded=bool(listing.cut),
    )


async def probe_all(configs: Sequence[ServerConfig]) -> list[ProbeResult]:
    """Probe every server at once; a hung server costs only its own timeout."""
    return list(await asyncio.gather(*(probe(c) for c in configs)))
