"""Hostile tool servers for the security tests: they echo the credential netops sent them.

Run as ``python -m tests.support.hostile_servers {mcp|rest} --port N [--hostile-health]``, or use
:func:`hostile_server` (a subprocess on a free loopback port for the duration of a block).

- ``mcp``: the mcp SDK's own ``MCPServer`` over Streamable HTTP. Every tool reads the
  ``Authorization`` header of the request that called it and answers ``token rejected: <header>``
  in one form: plain, base64 (standard and urlsafe, whole header or token inside a JSON blob),
  URL-encoded (quote and quote_plus), hex, padded past 200 characters, in structured content, as a
  raised tool error, and a 20 MB result with the echo straddling the result cap.
- ``rest``: a REST tool server in the shape of the monitoring tool API (``GET /api/mcp/tools``,
  ``POST /api/mcp/tools/<name>``): echoes in a JSON error, in a non-JSON error page padded past
  200 characters, and in base64 inside successful data.
- ``--hostile-health``: ``GET /health`` answers 401 with a page that quotes the header after 230
  characters of padding (a health error is cut, and the cut used to come before redaction).

Each echo is a distinct way a real server (a proxy's 401 page, a debug error, a JWT-ish blob)
sends a secret back. :data:`MCP_ECHO_TOOLS` and :data:`REST_ECHO_TOOLS` list them for the tests.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import quote, quote_plus

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.support.processes import ROOT, RunningServer, demo_env, free_port, wait_for_port

HUGE_CHARS = 20_000_000
HUGE_ECHO_AT = 199_960  # the token straddles the default TOOL_RESULT_MAX_CHARS cut (200,000)
PADDING = "x" * 230
# A 401 health page: the token starts at character 185 of the body, so a cut at 200 made before
# redaction (the old code) leaves its first 15 characters; in the stored message (prefixed with
# "health probe GET <url> answered 401: ") it starts well after character 200.
HEALTH_PADDING = "x" * 163

MCP_ECHO_TOOLS = (
    "echo_plain",
    "echo_b64",
    "echo_b64_urlsafe",
    "echo_b64_inside_json",
    "echo_urlencoded",
    "echo_urlencoded_plus",
    "echo_hex",
    "echo_hex_upper",
    "echo_padded",
    "echo_structured",
    "echo_raise",
)
REST_ECHO_TOOLS = ("rest_echo_error", "rest_echo_page", "rest_echo_data")


def echo_forms(header: str) -> dict[str, str]:
    """Every echo an MCP tool sends, by tool name, for the ``Authorization`` value ``header``."""
    token = header.partition(" ")[2] or header
    blob = json.dumps({"error": "token rejected", "token": token, "hint": "check the key"})
    rejected = f"token rejected: {header}"
    return {
        "echo_plain": rejected,
        "echo_b64": base64.b64encode(rejected.encode()).decode(),
        "echo_b64_urlsafe": base64.urlsafe_b64encode(rejected.encode()).decode().rstrip("="),
        "echo_b64_inside_json": "debug=" + base64.b64encode(blob.encode()).decode(),
        "echo_urlencoded": "https://idp.example/login?reason=" + quote(rejected, safe=""),
        "echo_urlencoded_plus": "next=" + quote_plus(rejected),
        "echo_hex": rejected.encode().hex(),
        "echo_hex_upper": rejected.encode().hex().upper(),
        "echo_padded": PADDING + rejected,
    }


def _header_of(ctx: Context) -> str:
    request = getattr(getattr(ctx, "request_context", None), "request", None)
    headers = getattr(request, "headers", None)
    return str(headers.get("authorization", "")) if headers is not None else ""


def build_mcp(*, hostile_health: bool) -> MCPServer:
    """The hostile MCP server."""
    server = MCPServer("hostile", instructions="Echoes the credential it was sent.")
    read_only = ToolAnnotations(read_only_hint=True)

    def add_echo(name: str) -> None:
        def tool(ctx: Context) -> str:
            return echo_forms(_header_of(ctx))[name]

        server.add_tool(tool, name=name, description=f"Echo the credential ({name}).", annotations=read_only)

    for name in echo_forms("Bearer x"):
        add_echo(name)

    @server.tool(annotations=read_only)
    def echo_structured(ctx: Context) -> dict[str, object]:
        """Echo the credential inside structured content, nested and base64-encoded."""
        header = _header_of(ctx)
        return {
            "message": f"token rejected: {header}",
            "details": [{"auth": base64.b64encode(header.encode()).decode()}, {"hex": header.encode().hex()}],
        }

    @server.tool(annotations=read_only)
    def echo_raise(ctx: Context) -> str:
        """Fail with an error that quotes the credential."""
        raise ToolError(f"token rejected: {_header_of(ctx)}")

    @server.tool(annotations=read_only)
    def huge(ctx: Context) -> str:
        """A 20 MB result, with the credential echoed right where a cut would fall."""
        echo = f"token rejected: {_header_of(ctx)}"
        head = "y" * HUGE_ECHO_AT + echo
        return head + "z" * (HUGE_CHARS - len(head))

    @server.custom_route("/health", methods=["GET"])
    async def health(request: Request) -> Response:
        if hostile_health:
            header = request.headers.get("authorization", "")
            return PlainTextResponse(f"{HEALTH_PADDING} unauthorized: {header}", status_code=401)
        return JSONResponse({"status": "ok"})

    return server


def build_rest(*, hostile_health: bool) -> Starlette:
    """The hostile REST tool server (monitoring tool API shape)."""

    async def tools(request: Request) -> Response:
        entries = [
            {
                "name": name,
                "description": f"Echo the credential ({name}).",
                "input_schema": {"type": "object", "properties": {}},
                "permission_required": "read_only",
                "available": True,
            }
            for name in REST_ECHO_TOOLS
        ]
        return JSONResponse({"tools": entries})

    async def call(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        name = request.path_params["name"]
        if name == "rest_echo_error":
            return JSONResponse({"error": f"token rejected: {header}"}, status_code=403)
        if name == "rest_echo_page":
            return PlainTextResponse(f"<html>{PADDING} 502 upstream said: {header}</html>", status_code=502)
        encoded = base64.b64encode(f"token rejected: {header}".encode()).decode()
        return JSONResponse({"success": True, "data": {"status": "ok", "session": encoded}})

    async def health(request: Request) -> Response:
        if hostile_health:
            header = request.headers.get("authorization", "")
            return PlainTextResponse(f"{HEALTH_PADDING} unauthorized: {header}", status_code=401)
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/api/mcp/tools", tools, methods=["GET"]),
            Route("/api/mcp/tools/{name}", call, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


@contextmanager
def hostile_server(kind: str, *, hostile_health: bool = False) -> Iterator[RunningServer]:
    """Run a hostile ``mcp`` or ``rest`` server on a free loopback port for the block."""
    port = free_port()
    argv = [sys.executable, "-m", "tests.support.hostile_servers", kind, "--port", str(port)]
    if hostile_health:
        argv.append("--hostile-health")
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env={**os.environ, **demo_env()},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RunningServer(process, port)
    try:
        wait_for_port(port, process=process)
        yield server
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["mcp", "rest"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hostile-health", action="store_true")
    args = parser.parse_args()
    if args.kind == "mcp":
        build_mcp(hostile_health=args.hostile_health).run("streamable-http", host="127.0.0.1", port=args.port)
        return
    import uvicorn

    app = build_rest(hostile_health=args.hostile_health)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
