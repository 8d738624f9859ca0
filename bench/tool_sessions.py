"""Tool calls through netops on kept MCP sessions, against a direct client on a kept session.

Issue 11's figures: per target server, the median latency of one tool call

- direct: the SDK's own ``mcp.Client`` in the bench process, one session kept open (the baseline);
- gateway: ``POST /api/mcp/tools/{name}`` to a daphne child (one kept HTTP connection), which calls
  the server on its kept session (registry.sessions);
- /mcp: ``tools/call`` on netops' own MCP endpoint through one kept ``mcp.Client`` session;

measured interleaved (direct, gateway, /mcp, direct, ...) in the same run, ratios to direct. Targets:
the demo MCP server over Streamable HTTP, the same server over stdio (Python), and the npm
reference server ``server-everything`` over stdio (Node; skipped when node/npm are missing).

Run: ``.venv/bin/python bench/tool_sessions.py [--rounds 60]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._setup import django_on_scratch_db  # noqa: E402

WARMUP = 5


@dataclass
class Target:
    label: str
    server: str  # registered name
    tool: str  # the tool's name on its server
    arguments: dict[str, Any]
    direct: Any  # what mcp.Client connects to


async def _timed(call: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await call()
    return (time.perf_counter() - started) * 1000


async def _measure(target: Target, public: str, base_url: str, key: str, rounds: int) -> dict[str, float]:
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"Authorization": f"Bearer {key}"}
    async with AsyncExitStack() as stack:
        direct = await stack.enter_async_context(Client(target.direct))
        gateway = await stack.enter_async_context(
            httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60)
        )
        ours = await stack.enter_async_context(
            Client(
                streamable_http_client(
                    f"{base_url}/mcp", http_client=httpx2.AsyncClient(headers=headers, timeout=60)
                )
            )
        )

        async def call_direct() -> None:
            result = await direct.call_tool(target.tool, target.arguments)
            assert not result.is_error, result

        async def call_gateway() -> None:
            response = await gateway.post(f"/api/mcp/tools/{public}", json=target.arguments)
            assert response.status_code == 200, response.text[:300]

        async def call_mcp() -> None:
            result = await ours.call_tool(public, target.arguments)
            assert not result.is_error, result

        calls = {"direct": call_direct, "gateway": call_gateway, "/mcp": call_mcp}
        for _ in range(WARMUP):
            for call in calls.values():
                await call()
        samples: dict[str, list[float]] = {name: [] for name in calls}
        for _ in range(rounds):
            for name, call in calls.items():
                samples[name].append(await _timed(call))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    scratch = django_on_scratch_db()

    from django.contrib.auth.models import User
    from mcp import StdioServerParameters

    from registry.keys import api_key_create
    from registry.models import MCPServer, Tool
    from registry.services import mcp_servers_check_health
    from tests.support.daphne import daphne
    from tests.support.processes import demo_command, demo_env, mcp_demo_server

    owner = User.objects.create_superuser("bench", "bench@example.com", "pw-for-bench-1")
    _, key = api_key_create(owner=owner, name="bench", level="admin", rate_limit=2_000_000_000)
    env = {**demo_env(), "PATH": os.environ["PATH"]}
    command, *stdio_args = demo_command("stdio")

    with mcp_demo_server("http") as demo:
        targets = [
            Target("HTTP (Python SDK server)", "lab-http", "add", {"a": 2, "b": 3}, demo.base_url + "/mcp"),
            Target(
                "stdio (Python SDK server)",
                "lab-python",
                "add",
                {"a": 2, "b": 3},
                StdioServerParameters(command=command, args=stdio_args, env=env),
            ),
        ]
        MCPServer.objects.create(name="lab-http", protocol="http", url=demo.base_url + "/mcp")
        MCPServer.objects.create(
            name="lab-python", protocol="stdio", command=command, args=stdio_args, env=env
        )
        try:
            from tests.support.npm_everything import everything_command

            node, *node_args = everything_command()
            targets.append(
                Target(
                    "stdio (Node, server-everything)",
                    "lab-node",
                    "get-sum",
                    {"a": 2, "b": 3},
                    StdioServerParameters(command=node, args=node_args),
                )
            )
            MCPServer.objects.create(name="lab-node", protocol="stdio", command=node, args=node_args)
        except BaseException as exc:  # pytest.skip without node/npm
            print(f"  (Node target skipped: {exc})")
        outcomes = mcp_servers_check_health(servers=list(MCPServer.objects.all()))
        assert all(o.ok for o in outcomes), [o.error for o in outcomes]
        # The health check of this process kept sessions open; the daphne child has its own.
        from registry.sessions import pool

        pool().shutdown()

        log = scratch / "daphne.log"
        with daphne(dict(os.environ), log=log, print_log=False) as child:
            results = []
            for target in targets:
                public = Tool.objects.get(server__name=target.server, name=target.tool).public_name
                results.append(
                    (target, asyncio.run(_measure(target, public, child.base_url, key, args.rounds)))
                )

    print(f"tool calls on kept sessions, median of {args.rounds} interleaved rounds ({os.cpu_count()} CPUs)")
    for target, medians in results:
        direct = medians["direct"]
        print(f"  {target.label}: {target.tool}")
        print(f"    direct mcp.Client, kept session: {direct:7.2f} ms")
        print(
            f"    gateway POST /api/mcp/tools:     {medians['gateway']:7.2f} ms  ratio {medians['gateway'] / direct:.2f}"
        )
        print(
            f"    /mcp tools/call, kept session:   {medians['/mcp']:7.2f} ms  ratio {medians['/mcp'] / direct:.2f}"
        )
    if log.exists() and "Traceback" in log.read_text(errors="replace"):
        print("  daphne log has tracebacks:\n" + log.read_text(errors="replace")[-3000:])
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
