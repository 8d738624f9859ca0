"""A real MCP server built with the mcp SDK, for tests and benchmarks.

Run as ``python -m tests.support.mcp_demo_server {stdio|http|sse} [--port N] [--hang] [--tools N]``.
``--hang`` accepts connections and never answers (HTTP: every request stalls; stdio: stdin is read
and nothing is written), which is what a stuck server looks like to netops.
``--tools N`` adds N extra generated tools (catalog benchmarks).
``--stateful`` adds ``count`` (how many times it was called in this process) and ``pid``.
``--variant-file PATH`` reads a JSON object at start: ``bounce_description`` replaces that tool's
description and ``extra_tools`` adds generated tools, so a stdio server (started anew for each
check) can change its list between checks the way an updated server does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response


def build(*, extra_tools: int = 0, name: str = "demo", bounce_description: str = "") -> MCPServer:
    """The demo server: a few network-flavoured tools with annotations, and a /health route."""
    server = MCPServer(name, instructions="Demo tools for netops tests.")

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True))
    async def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool(annotations=ToolAnnotations(readOnlyHint=True, idempotentHint=True))
    def get_interface_status(device: str, interface: str) -> dict[str, str]:
        """Return the operational status of one interface of a device."""
        return {"device": device, "interface": interface, "oper_status": "up", "speed": "10G"}

    @server.tool(
        annotations=ToolAnnotations(destructiveHint=True),
        description=bounce_description or "Shut and re-enable an interface (pretend).",
    )
    def bounce_interface(device: str, interface: str) -> str:
        return f"{device} {interface} bounced"

    @server.tool()
    async def slow_echo(text: str, seconds: float = 1.0) -> str:
        """Echo ``text`` after ``seconds``; records a cancellation in CANCEL_MARKER if one arrives."""
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            marker = os.environ.get("CANCEL_MARKER")
            if marker:
                Path(marker).write_text(f"cancelled:{text}")
            raise
        return text

    @server.tool()
    def fail(reason: str) -> str:
        """Always fails with ``reason`` (an MCP tool error, not a transport error)."""
        raise ToolError(reason)

    for index in range(extra_tools):
        _add_generated_tool(server, index)

    @server.custom_route("/health", methods=["GET"])
    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    @server.custom_route("/broken", methods=["GET"])
    async def broken(request: Request) -> Response:
        # What a proxy in front of a dead backend answers: a whole HTML page.
        page = "<!DOCTYPE html><html><head><title>503 Service\n Unavailable</title></head><body>"
        return HTMLResponse(page + "<p>upstream down</p>" * 200 + "</body></html>", status_code=503)

    return server


def _add_stateful_tools(server: MCPServer) -> None:
    calls = 0

    def count() -> int:
        """How many times this tool was called in this server process (state across calls)."""
        nonlocal calls
        calls += 1
        return calls

    def pid() -> int:
        """The server's process id."""
        return os.getpid()

    server.add_tool(count, annotations=ToolAnnotations(readOnlyHint=False))
    server.add_tool(pid, annotations=ToolAnnotations(readOnlyHint=True))


def _add_generated_tool(server: MCPServer, index: int) -> None:
    def generated(device: str, limit: int = 10) -> dict[str, object]:
        return {"tool": index, "device": device, "limit": limit}

    server.add_tool(
        generated,
        name=f"generated_tool_{index:03d}",
        description=f"Generated tool number {index} for catalog benchmarks; returns its arguments.",
        annotations=ToolAnnotations(readOnlyHint=True),
    )


class _HangingApp:
    """ASGI app that accepts every HTTP request and never answers (a hung MCP server)."""

    async def __call__(self, scope: dict, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("transport", choices=["stdio", "http", "sse"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--hang", action="store_true")
    parser.add_argument("--tools", type=int, default=0)
    parser.add_argument("--name", default="demo")
    parser.add_argument("--variant-file", type=Path)
    parser.add_argument("--stateful", action="store_true")
    args = parser.parse_args()
    variant = {}
    if args.variant_file and args.variant_file.exists():
        variant = json.loads(args.variant_file.read_text())
    if args.hang and args.transport == "stdio":
        # Read requests, never answer.
        import sys

        for _ in sys.stdin:
            pass
        return
    if args.hang:
        import uvicorn

        uvicorn.run(_HangingApp(), host="127.0.0.1", port=args.port, log_level="warning")
        return
    server = build(
        extra_tools=args.tools + int(variant.get("extra_tools", 0)),
        name=args.name,
        bounce_description=str(variant.get("bounce_description", "")),
    )
    if args.stateful:
        _add_stateful_tools(server)
    if args.transport == "stdio":
        server.run("stdio")
    elif args.transport == "sse":
        server.run("sse", host="127.0.0.1", port=args.port)
    else:
        server.run("streamable-http", host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
