"""Catalog listing from cache: 10 registered servers x 50 tools.

Prints the median time per ``ToolCatalog.load().tools()`` and the number of network connections it
opened (must be 0), against two baselines measured in the same run:
- the bare database read of the same rows (what listing cannot go below), and
- one live ``tools/list`` from a real MCP server over loopback (what listing would cost per server
  without the cache).
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._setup import django_on_scratch_db, summary

SERVERS, TOOLS, ROUNDS = 10, 50, 300


def main() -> None:
    django_on_scratch_db()
    from registry.catalog import ToolCatalog
    from registry.connections import ServerConfig, list_tools
    from registry.models import MCPServer, ServerStatus
    from registry.tool_sync import server_tools_sync
    from tests.support.processes import mcp_demo_server

    with mcp_demo_server("http", "--tools", str(TOOLS - 5)) as running:
        config = ServerConfig(name="live", protocol="http", url=running.base_url + "/mcp")
        tools = asyncio.run(list_tools(config)).tools
        assert len(tools) == TOOLS, len(tools)
        for index in range(SERVERS):
            server = MCPServer.objects.create(
                name=f"server-{index:02d}", protocol="http", url=config.url, status=ServerStatus.HEALTHY
            )
            server_tools_sync(server=server, tools=[dict(t) for t in tools])

        live: list[float] = []
        for _ in range(20):
            started = time.perf_counter()
            asyncio.run(list_tools(config))
            live.append((time.perf_counter() - started) * 1000)

    connects: list[object] = []
    original = socket.socket.connect

    def counting_connect(self: socket.socket, address: object) -> None:
        connects.append(address)
        return original(self, address)  # type: ignore[arg-type]

    socket.socket.connect = counting_connect  # type: ignore[method-assign]
    listing: list[float] = []
    raw: list[float] = []
    try:
        for _ in range(ROUNDS):
            started = time.perf_counter()
            names = [t.name for t in ToolCatalog.load().tools()]
            listing.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            rows = list(MCPServer.objects.filter(enabled=True, status="healthy").values_list("name", "tools"))
            raw.append((time.perf_counter() - started) * 1000)
    finally:
        socket.socket.connect = original  # type: ignore[method-assign]

    assert len(names) == SERVERS * TOOLS and len(set(names)) == SERVERS * TOOLS
    assert len(rows) == SERVERS
    print(
        f"catalog listing: {SERVERS} servers x {TOOLS} tools = {len(names)} tools (names namespaced: all clash)"
    )
    print(f"  ToolCatalog.load().tools():      {summary(listing)}")
    print(f"  baseline, bare DB read of rows:  {summary(raw)}")
    print(f"  baseline, one live tools/list:   {summary(live)}")
    print(f"  ratio listing / bare DB read:    {statistics.median(listing) / statistics.median(raw):.2f}x")
    print(
        f"  ratio listing / live list x {SERVERS}:  "
        f"{statistics.median(listing) / (statistics.median(live) * SERVERS):.4f}x"
    )
    print(f"  network connections opened while listing {ROUNDS} times: {len(connects)}")


if __name__ == "__main__":
    main()
