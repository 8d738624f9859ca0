"""Requests per second of the REST tool gateway on one daphne process, 16 concurrent clients.

Issue 11 asks for at least 10x the 21 req/s of main for ``POST /api/mcp/tools/{name}`` to an HTTP MCP
tool. Three runs of ``SECONDS`` each, in one process, against the same demo MCP server
(``tests/support/mcp_demo_server.py`` over Streamable HTTP):

1. baseline: ``CONCURRENCY`` kept ``mcp.Client`` sessions calling ``add`` directly (what the server
   itself can do with this machine's CPU shared with the bench);
2. ``POST /api/mcp/tools/add`` through one daphne child, ``CONCURRENCY`` async httpx workers on
   kept connections; the ratio to (1) is printed;
3. ``POST /api/mcp/tools/bench_ping``, a built-in tool that answers in-process: netops' own ceiling
   (routing, middleware, admission, catalog, validation, audit) with no remote hop.

Every answer must be 200 with the right data, and every call must have its audit row when the run
ends (the audit is written before the response, in batches). By default the daphne child and the
bench share a scratch SQLite database and local-memory cache (the embedded default);
``--database-url postgres://...`` and ``--redis-url redis://...`` run on PostgreSQL and Redis (the
production shape: the rate limit counted in Redis).

Run: ``.venv/bin/python bench/gateway_throughput.py [--seconds 10] [--database-url ...] [--redis-url ...]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._setup import percentile  # noqa: E402

CONCURRENCY = 16
RATE_LIMIT = 2_000_000_000  # per hour: never reached by the bench
MAIN_REQUESTS_PER_SECOND = 21.0  # issue 11: what main did


@dataclass
class Run:
    """What ``CONCURRENCY`` workers did in one timed run."""

    label: str
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def line(self) -> str:
        median = statistics.median(self.latencies) if self.latencies else float("nan")
        p99 = percentile(self.latencies, 0.99) if self.latencies else float("nan")
        return (
            f"  {self.label}: {len(self.latencies)} calls in {self.elapsed:.1f} s = {self.rate:.0f} req/s; "
            f"latency median {median:.1f} ms, p99 {p99:.1f} ms; failures {dict(self.failures) or 0}"
        )


async def _timed(label: str, seconds: float, call: Callable[[int], Awaitable[str | None]]) -> Run:
    """``CONCURRENCY`` workers calling ``call(worker)`` until ``seconds`` pass; ``call`` returns a
    failure description or None."""
    run = Run(label)
    deadline = time.perf_counter() + seconds

    async def worker(index: int) -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            failure = await call(index)
            if failure is None:
                run.latencies.append((time.perf_counter() - started) * 1000)
            else:
                run.failures[failure] += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(CONCURRENCY)))
    run.elapsed = time.perf_counter() - started
    return run


async def _direct(url: str, seconds: float) -> Run:
    """Baseline: kept sessions of the SDK's own client, one per worker."""
    from contextlib import AsyncExitStack

    from mcp import Client

    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(url)) for _ in range(CONCURRENCY)]
        for client in clients:  # warm: the handshake is not part of the run
            await client.call_tool("add", {"a": 1, "b": 1})

        async def call(index: int) -> str | None:
            result = await clients[index].call_tool("add", {"a": 2, "b": 3})
            return (
                None if not result.is_error and result.structured_content == {"result": 5} else "bad answer"
            )

        return await _timed("direct mcp.Client, kept sessions, add", seconds, call)


async def _gateway(
    base_url: str, headers: dict[str, str], tool: str, body: dict[str, int], want: object, seconds: float
) -> Run:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60, limits=limits) as client:
        path = f"/api/mcp/tools/{tool}"
        await asyncio.gather(*(client.post(path, json=body) for _ in range(CONCURRENCY)))  # open, warm

        async def call(index: int) -> str | None:
            response = await client.post(path, json=body)
            if response.status_code != 200:
                return f"{response.status_code} {response.text[:120]}"
            answer = response.json()  # the reference shape, plus "content" (and "structured_content")
            ok = answer.get("success") is True and answer.get("data") == want
            return None if ok else f"data {response.text[:80]}"

        return await _timed(f"POST /api/mcp/tools/{tool} via daphne", seconds, call)


def _django(database_url: str | None, redis_url: str | None) -> Path:
    scratch = Path(tempfile.mkdtemp(prefix="netops-bench-"))
    os.environ["NETOPS_VAR_DIR"] = str(scratch)
    for name, value in (("DATABASE_URL", database_url), ("REDIS_URL", redis_url)):
        if value:
            os.environ[name] = value
        else:
            os.environ.pop(name, None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "netops.settings")
    os.environ["LOG_LEVEL"] = "WARNING"
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return scratch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--database-url", default=None, help="PostgreSQL for bench and daphne (default SQLite)"
    )
    parser.add_argument(
        "--redis-url", default=None, help="Redis for cache and rate limits (default local memory)"
    )
    parser.add_argument(
        "--conn-max-age",
        default="60",
        help="DATABASE_CONN_MAX_AGE of the daphne child (0: a connection per trip)",
    )
    args = parser.parse_args()
    scratch = _django(args.database_url, args.redis_url)

    from django.contrib.auth.models import User

    from registry.keys import api_key_create
    from registry.models import MCPServer, ToolCallAudit
    from registry.services import mcp_servers_check_health
    from tests.support.daphne import daphne
    from tests.support.processes import mcp_demo_server

    User.objects.filter(username="bench").delete()
    owner = User.objects.create_superuser("bench", "bench@example.com", "pw-for-bench-1")  # no ceiling
    _, key = api_key_create(owner=owner, name="bench", level="read_only", rate_limit=RATE_LIMIT)
    headers = {"Authorization": f"Bearer {key}"}
    MCPServer.objects.filter(name="lab").delete()
    ToolCallAudit.objects.all().delete()

    with mcp_demo_server("http") as demo:
        server = MCPServer.objects.create(name="lab", protocol="http", url=demo.base_url + "/mcp")
        outcome = mcp_servers_check_health(servers=[server])[0]
        assert outcome.ok, outcome.error
        direct = asyncio.run(_direct(demo.base_url + "/mcp", args.seconds))
        log = scratch / "daphne.log"
        env = {**os.environ, "DATABASE_CONN_MAX_AGE": args.conn_max_age}
        app = "bench._trivial_tool_asgi:application"
        with daphne(env, log=log, print_log=False, app=app) as child:
            remote = asyncio.run(_gateway(child.base_url, headers, "add", {"a": 2, "b": 3}, 5, args.seconds))
            builtin = asyncio.run(
                _gateway(child.base_url, headers, "bench_ping", {"n": 1}, {"pong": 1}, args.seconds)
            )
            time.sleep(0.5)  # the daphne child finishes its last writes
    sent = len(remote.latencies) + sum(remote.failures.values()) + len(builtin.latencies)
    sent += sum(builtin.failures.values()) + 2 * CONCURRENCY
    audited = ToolCallAudit.objects.filter(via="gateway").count()

    backend = "PostgreSQL" if args.database_url else "SQLite"
    cache = "Redis" if args.redis_url else "local memory"
    print(
        f"gateway throughput, one daphne process, {CONCURRENCY} concurrent clients, {args.seconds:g} s each"
    )
    print(
        f"  ({backend} database, DATABASE_CONN_MAX_AGE={args.conn_max_age}, {cache} cache and rate limits; "
        f"{os.cpu_count()} CPUs shared by all)"
    )
    print(direct.line())
    print(remote.line())
    print(builtin.line())
    print(
        f"  gateway/direct: {remote.rate / direct.rate:.2f} of the direct rate (direct/gateway {direct.rate / remote.rate:.2f}x)"
    )
    print(
        f"  gateway vs main's {MAIN_REQUESTS_PER_SECOND:g} req/s: {remote.rate / MAIN_REQUESTS_PER_SECOND:.1f}x"
    )
    print(f"  built-in tool (netops' own ceiling): {builtin.rate:.0f} req/s")
    print(f"  audit rows: {audited} of {sent} gateway calls sent")
    if log.exists() and "Traceback" in log.read_text(errors="replace"):
        print("  daphne log has tracebacks:\n" + log.read_text(errors="replace")[-3000:])
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
