"""Health probes of tool servers, run concurrently, each bounded by its own timeout.

Django-free like :mod:`registry.connections`: takes configs, returns outcomes. Recording the
outcomes (and the no-flapping rule) is :func:`registry.services.mcp_servers_check_health`'s job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from registry.connections import (
    ServerConfig,
    ServerUnreachable,
    ToolDefinition,
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


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failure of a remote server, without the noise of wrapper groups."""
    if isinstance(exc, ServerUnreachable):
        return str(exc)
    if isinstance(exc, BaseExceptionGroup):
        # anyio task groups wrap the real cause; show the innermost first error.
        return describe_error(exc.exceptions[0])
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text


async def probe(config: ServerConfig) -> ProbeResult:
    """Talk to the server for real: probe the health path (http, rest), then list its tools."""
    started = time.perf_counter()
    try:
        async with asyncio.timeout(config.connect_timeout):
            await probe_health_path(config)
            tools = await list_tools(config)
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
    return ProbeResult(ok=True, duration_ms=(time.perf_counter() - started) * 1000, tools=tools)


async def probe_all(configs: Sequence[ServerConfig]) -> list[ProbeResult]:
    """Probe every server at once; a hung server costs only its own timeout."""
    return list(await asyncio.gather(*(probe(c) for c in configs)))
