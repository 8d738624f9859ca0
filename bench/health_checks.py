"""Health-checking many servers at once: wall time should be about one timeout at most.

1. 10 servers of which 3 hang. Baselines in the same run: one hung server alone (exactly one
   timeout) and the 7 healthy servers alone. The 7 healthy servers are separate real MCP server
   processes (Streamable HTTP on loopback); the 3 hung ones accept connections and never answer.
2. Issue 11: 25 servers, 15 over Streamable HTTP and 10 over stdio (5 Python SDK servers, 5 of the
   npm reference server-everything on Node, when node/npm are present), connect timeout
   ``STDIO_TIMEOUT``: the first check starts the 10 children at once (cold), the second reuses the
   kept sessions (warm). All must be healthy; the wall times are given as ratios to the timeout.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._setup import django_on_scratch_db

TIMEOUT = 3.0
STDIO_TIMEOUT = 10.0


def main() -> None:
    django_on_scratch_db()
    from registry.models import MCPServer
    from registry.services import mcp_servers_check_health
    from tests.support.processes import mcp_demo_server

    with ExitStack() as stack:
        healthy = [
            MCPServer.objects.create(
                name=f"healthy-{i}",
                protocol="http",
                url=stack.enter_context(mcp_demo_server("http")).base_url + "/mcp",
                connect_timeout=TIMEOUT,
            )
            for i in range(7)
        ]
        hung = [
            MCPServer.objects.create(
                name=f"hung-{i}",
                protocol="http",
                url=stack.enter_context(mcp_demo_server("http", "--hang")).base_url + "/mcp",
                health_check="",
                connect_timeout=TIMEOUT,
            )
            for i in range(3)
        ]

        def timed(servers: list[MCPServer]) -> tuple[float, list[bool]]:
            started = time.perf_counter()
            outcomes = mcp_servers_check_health(servers=servers)
            return time.perf_counter() - started, [o.ok for o in outcomes]

        one_hung, _ = timed(hung[:1])
        healthy_only, healthy_ok = timed(healthy)
        all_ten, all_ok = timed(healthy + hung)

    assert all(healthy_ok), healthy_ok
    assert all_ok == [True] * 7 + [False] * 3, all_ok
    print(f"health checks, timeout {TIMEOUT:g} s per server")
    print(f"  baseline, 1 hung server alone:        {one_hung:.2f} s")
    print(f"  baseline, 7 healthy servers alone:    {healthy_only:.2f} s")
    print(f"  10 servers (7 healthy + 3 hung):      {all_ten:.2f} s")
    print(
        f"  ratio 10 servers / one timeout:       {all_ten / one_hung:.2f}x  (3 sequential timeouts would be 3.00x)"
    )
    twenty_five()


def twenty_five() -> None:
    import os

    from registry.models import MCPServer
    from registry.services import mcp_servers_check_health
    from tests.support.processes import demo_command, demo_env, mcp_demo_server

    command, *args = demo_command("stdio")
    env = {**demo_env(), "PATH": os.environ["PATH"]}
    try:
        from tests.support.npm_everything import everything_command

        node: list[str] | None = everything_command()
    except BaseException as exc:  # pytest.skip without node/npm
        print(f"  (Node servers replaced by Python ones: {exc})")
        node = None
    with ExitStack() as stack:
        servers = [
            MCPServer.objects.create(
                name=f"http-{i:02d}",
                protocol="http",
                url=stack.enter_context(mcp_demo_server("http")).base_url + "/mcp",
                connect_timeout=STDIO_TIMEOUT,
            )
            for i in range(15)
        ]
        for i in range(10):
            argv = node if node is not None and i >= 5 else [command, *args]
            servers.append(
                MCPServer.objects.create(
                    name=f"stdio-{i:02d}",
                    protocol="stdio",
                    command=argv[0],
                    args=argv[1:],
                    env=env if argv[0] == command else {},
                    connect_timeout=STDIO_TIMEOUT,
                )
            )
        timings = []
        for _ in range(2):
            started = time.perf_counter()
            outcomes = mcp_servers_check_health(servers=servers)
            timings.append(time.perf_counter() - started)
            failed = [(o.server.name, o.error) for o in outcomes if not o.ok]
            assert not failed, failed
    kinds = "5 Python + 5 Node" if node is not None else "10 Python"
    print(f"health checks of 25 servers (15 HTTP, 10 stdio: {kinds}), connect timeout {STDIO_TIMEOUT:g} s")
    print(
        f"  first check (10 children started at once): {timings[0]:.2f} s = {timings[0] / STDIO_TIMEOUT:.2f} of the timeout"
    )
    print(
        f"  second check (kept sessions):              {timings[1]:.2f} s = {timings[1] / STDIO_TIMEOUT:.2f} of the timeout"
    )
    print("  all 25 healthy both times")


if __name__ == "__main__":
    main()
