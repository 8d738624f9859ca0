"""Tool gateway overhead: ``POST /api/mcp/tools/{name}`` against calling the same tool directly.

Two pairs, each pair measured interleaved in the same run (one gateway request, one direct call):

- in-process, a trivial built-in read tool registered in the bench process: the gateway view
  through ``httpx.ASGITransport(app=netops.asgi.application)`` (routing, middleware, key check,
  rate limit, catalog load, schema check, audit row) against ``ToolCatalog.call`` of the same tool.
  This is the gateway's own cost.
- over loopback, the demo MCP server's ``add``: a real daphne child's gateway (the child cannot get
  a test provider, so its fast tool is a server tool) against ``ToolCatalog.call("add")`` in the
  bench process, which opens the same kind of MCP session to the demo server.

Then requests per second on one daphne process: concurrent requests from an async httpx client for
about ten seconds (``add`` through to the demo server), and for five seconds the listing (no remote).
The bench process and the daphne child share one SQLite database (the embedded default, WAL) and
the key's limit is set far above what the bench sends.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._setup import django_on_scratch_db, percentile, summary

IN_PROCESS_ROUNDS = 1000
LOOPBACK_ROUNDS = 300
WARMUP = 50
CONCURRENCY = 16
CALL_SECONDS = 10.0
LIST_SECONDS = 5.0
RATE_LIMIT = 2_000_000_000  # per hour: never reached by the bench

Samples = list[float]


async def _interleaved(
    first: Callable[[], Awaitable[None]], second: Callable[[], Awaitable[None]], rounds: int
) -> tuple[Samples, Samples]:
    """Time ``rounds`` calls of each, alternating, after a warm-up; milliseconds."""
    for _ in range(WARMUP):
        await first()
        await second()
    a: Samples = []
    b: Samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await first()
        a.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        await second()
        b.append((time.perf_counter() - started) * 1000)
    return a, b


def _overhead(gateway: Samples, direct: Samples) -> str:
    median = statistics.median(gateway) - statistics.median(direct)
    p99 = percentile(gateway, 0.99) - percentile(direct, 0.99)
    ratio = statistics.median(gateway) / statistics.median(direct)
    return f"median +{median:.3f} ms ({ratio:.1f}x), p99 +{p99:.3f} ms"


async def _in_process(headers: dict[str, str]) -> tuple[Samples, Samples, Samples]:
    from netops.asgi import application
    from registry.catalog import ToolCatalog

    catalog = await ToolCatalog.aload()
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1", headers=headers) as client:

        async def through_gateway() -> None:
            response = await client.post("/api/mcp/tools/bench_ping", json={"n": 1})
            assert response.status_code == 200, response.text
            assert response.json()["data"] == {"pong": 1}, response.text

        async def direct() -> None:
            result = await catalog.call("bench_ping", {"n": 1})
            assert not result.is_error and result.structured_content == {"pong": 1}

        async def load_and_call() -> None:
            result = await (await ToolCatalog.aload()).call("bench_ping", {"n": 1})
            assert not result.is_error

        gateway, direct_samples = await _interleaved(through_gateway, direct, IN_PROCESS_ROUNDS)
        _, loaded = await _interleaved(direct, load_and_call, IN_PROCESS_ROUNDS // 4)
    return gateway, direct_samples, loaded


async def _loopback(base_url: str, headers: dict[str, str]) -> tuple[Samples, Samples]:
    from registry.catalog import ToolCatalog

    catalog = await ToolCatalog.aload(builtins=False)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:

        async def through_gateway() -> None:
            response = await client.post("/api/mcp/tools/add", json={"a": 2, "b": 3})
            assert response.status_code == 200, response.text
            assert response.json()["data"] == 5, response.text

        async def direct() -> None:
            result = await catalog.call("add", {"a": 2, "b": 3})
            assert not result.is_error and result.structured_content == {"result": 5}, result.text()

        return await _interleaved(through_gateway, direct, LOOPBACK_ROUNDS)


async def _throughput(
    base_url: str, headers: dict[str, str], method: str, path: str, body: Any, seconds: float
) -> tuple[int, float, Samples, Counter[int]]:
    """``CONCURRENCY`` workers sending requests until ``seconds`` have passed; (count, elapsed, ms, statuses)."""
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    latencies: Samples = []
    statuses: Counter[int] = Counter()
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30, limits=limits) as client:
        for _ in range(CONCURRENCY):  # open the connections before the clock starts
            await client.request(method, path, json=body)
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                response = await client.request(method, path, json=body)
                latencies.append((time.perf_counter() - started) * 1000)
                statuses[response.status_code] += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    return len(latencies), elapsed, latencies, statuses


def _throughput_line(label: str, result: tuple[int, float, Samples, Counter[int]]) -> str:
    count, elapsed, latencies, statuses = result
    return (
        f"  {label}: {count} requests in {elapsed:.1f} s = {count / elapsed:.0f} req/s; "
        f"latency median {statistics.median(latencies):.2f} ms, p99 {percentile(latencies, 0.99):.2f} ms; "
        f"statuses {dict(statuses)}"
    )


def main() -> None:
    scratch = django_on_scratch_db()
    from django.contrib.auth.models import User

    from registry.catalog import BuiltinProvider, BuiltinTool, CallContext, register_provider
    from registry.keys import api_key_create
    from registry.models import MCPServer, ToolCallAudit
    from registry.services import mcp_servers_check_health
    from tests.support.daphne import daphne
    from tests.support.processes import mcp_demo_server

    owner = User.objects.create_superuser("bench", "bench@example.com", "pw-for-bench-1")  # no rate ceiling
    _, key = api_key_create(owner=owner, name="bench", level="read_only", rate_limit=RATE_LIMIT)
    headers = {"Authorization": f"Bearer {key}"}

    async def ping(arguments: dict[str, Any], context: CallContext) -> dict[str, Any]:
        return {"pong": arguments.get("n", 0)}

    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "additionalProperties": False}
    tool = BuiltinTool("bench_ping", "Answer at once.", schema, ping, annotations={"readOnlyHint": True})
    register_provider(BuiltinProvider("bench", lambda: [tool]))

    in_gateway, in_direct, in_loaded = asyncio.run(_in_process(headers))

    with mcp_demo_server("http") as demo:
        server = MCPServer.objects.create(name="lab", protocol="http", url=demo.base_url + "/mcp")
        outcome = mcp_servers_check_health(servers=[server])[0]
        assert outcome.ok, outcome.error
        env = {**os.environ, "LOG_LEVEL": "WARNING"}  # the same NETOPS_VAR_DIR: the same database
        with daphne(env, log=scratch / "daphne.log", print_log=False) as child:
            loop_gateway, loop_direct = asyncio.run(_loopback(child.base_url, headers))
            calls = asyncio.run(
                _throughput(
                    child.base_url, headers, "POST", "/api/mcp/tools/add", {"a": 2, "b": 3}, CALL_SECONDS
                )
            )
            listing = asyncio.run(
                _throughput(child.base_url, headers, "GET", "/api/mcp/tools", None, LIST_SECONDS)
            )

    posts = IN_PROCESS_ROUNDS + LOOPBACK_ROUNDS + 2 * WARMUP + calls[0] + CONCURRENCY
    audited = ToolCallAudit.objects.count()
    assert set(calls[3]) == {200} and set(listing[3]) == {200}, (calls[3], listing[3])

    print("tool gateway overhead, per call (interleaved with its baseline)")
    print(f"in-process: built-in read tool, {IN_PROCESS_ROUNDS} calls each")
    print(f"  POST /api/mcp/tools/bench_ping (ASGI):  {summary(in_gateway)}")
    print(f"  baseline ToolCatalog.call:              {summary(in_direct)}")
    print(f"  info: ToolCatalog.aload() + call:       {summary(in_loaded)}")
    print(f"  gateway overhead:                       {_overhead(in_gateway, in_direct)}")
    print(f"daphne child over loopback: demo MCP server's add, {LOOPBACK_ROUNDS} calls each")
    print(f"  POST /api/mcp/tools/add (daphne):       {summary(loop_gateway)}")
    print(f"  baseline ToolCatalog.call('add'):       {summary(loop_direct)}")
    print(f"  gateway overhead:                       {_overhead(loop_gateway, loop_direct)}")
    print(f"throughput, one daphne process, {CONCURRENCY} concurrent requests (async httpx)")
    print(_throughput_line(f"POST /api/mcp/tools/add, {CALL_SECONDS:g} s", calls))
    print(_throughput_line(f"GET /api/mcp/tools, {LIST_SECONDS:g} s     ", listing))
    print(f"audit rows written: {audited} (gateway POSTs sent: {posts})")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
