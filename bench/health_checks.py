"""Health-checking 10 servers of which 3 hang: wall time should be about one timeout, not three.

Baselines in the same run: one hung server alone (exactly one timeout) and the 7 healthy servers
alone. The 7 healthy servers are separate real MCP server processes (Streamable HTTP on loopback);
the 3 hung ones are separate processes that accept connections and never answer.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._setup import django_on_scratch_db

TIMEOUT = 3.0


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


if __name__ == "__main__":
    main()
