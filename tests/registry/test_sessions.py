"""Kept MCP sessions (registry.sessions) against real MCP servers: stdio children and HTTP.

The pool is Django-free; these tests drive it through registry.connections (what the catalog
calls) with a fresh pool per test, and look at the server processes themselves (their pids, their
state, whether they are still running).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from registry import sessions
from registry.connections import ServerConfig, call_tool, list_tools
from tests.support.processes import ROOT, demo_command, demo_env, mcp_demo_server


@pytest.fixture
def fresh_pool() -> Iterator[sessions.SessionPool]:
    previous = sessions._pool
    sessions._pool = sessions.SessionPool(idle_seconds=300, max_concurrency=8)
    try:
        yield sessions._pool
    finally:
        sessions._pool.shutdown()
        sessions._pool = previous


def _stdio(*extra: str, name: str = "stateful") -> ServerConfig:
    command, *args = demo_command("stdio", "--stateful", *extra)
    return ServerConfig(
        name=name,
        protocol="stdio",
        command=command,
        args=tuple(args),
        env={**demo_env(), "PATH": os.environ["PATH"]},
        connect_timeout=30,
    )


async def _value(config: ServerConfig, tool: str, arguments: dict[str, object] | None = None) -> int:
    outcome = await call_tool(config, tool, arguments or {})
    assert not outcome.is_error, outcome.error
    return int(outcome.text())


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def _wait_gone(pid: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _running(pid):
            return True
        time.sleep(0.05)
    return False


def test_a_stdio_server_keeps_one_child_and_its_state_across_calls(fresh_pool: sessions.SessionPool) -> None:
    config = _stdio()

    async def scenario() -> tuple[list[int], list[int], float, float]:
        started = time.perf_counter()
        pids = [await _value(config, "pid")]
        first = time.perf_counter() - started
        counts = [await _value(config, "count") for _ in range(3)]
        started = time.perf_counter()
        pids.append(await _value(config, "pid"))
        later = time.perf_counter() - started
        await list_tools(config)  # a health check uses the same session
        pids.append(await _value(config, "pid"))
        return pids, counts, first, later

    # Each call in its own event loop, as a management command or a worker thread calls.
    pids, counts, first, later = asyncio.run(scenario())
    assert len(set(pids)) == 1 and _running(pids[0])
    assert counts == [1, 2, 3]  # a call sees what the previous call did
    assert later < first / 5, (first, later)  # no new process per call
    assert fresh_pool.stats()["sessions"] == 1
    assert asyncio.run(_value(config, "count")) == 4  # another loop, the same session

    fresh_pool.shutdown()
    assert _wait_gone(pids[0]), "the child outlived the pool"


def test_an_idle_session_is_closed_and_a_changed_configuration_opens_a_new_one(
    fresh_pool: sessions.SessionPool,
) -> None:
    fresh_pool.idle_seconds = 0.6
    config = _stdio()
    first = asyncio.run(_value(config, "pid"))
    assert _wait_gone(first, 5), "an idle session's child kept running"
    assert fresh_pool.stats()["sessions"] == 0
    second = asyncio.run(_value(config, "pid"))
    assert second != first and asyncio.run(_value(config, "count")) == 1

    fresh_pool.idle_seconds = 300
    edited = _stdio("--name", "edited")  # the same server, its arguments edited
    third = asyncio.run(_value(edited, "pid"))
    assert third != second and _wait_gone(second, 5)
    assert fresh_pool.open_keys() == ["stateful"]

    fresh_pool.close("stateful")  # what saving or deleting the server does
    assert _wait_gone(third, 5)


def test_a_dead_child_is_replaced_on_the_next_call(fresh_pool: sessions.SessionPool) -> None:
    config = _stdio()
    pid = asyncio.run(_value(config, "pid"))
    assert asyncio.run(_value(config, "count")) == 1
    os.kill(pid, signal.SIGKILL)
    assert _wait_gone(pid)
    # The broken session is dropped and the call retried once on a new one.
    replacement = asyncio.run(_value(config, "pid"))
    assert replacement != pid and asyncio.run(_value(config, "count")) == 1


def test_a_restarted_http_server_is_reached_again(fresh_pool: sessions.SessionPool) -> None:
    with mcp_demo_server("http", "--stateful") as running:
        config = ServerConfig(name="web", protocol="http", url=running.base_url + "/mcp", connect_timeout=10)
        assert asyncio.run(_value(config, "count")) == 1
        assert asyncio.run(_value(config, "count")) == 2
        port = running.port
    # The same server restarted on the same port: the kept session's connection is dead.
    with mcp_demo_server("http", "--stateful", port=port):
        assert asyncio.run(_value(config, "count")) == 1


def test_concurrent_calls_to_one_server_are_bounded(fresh_pool: sessions.SessionPool) -> None:
    fresh_pool.max_concurrency = 2
    with mcp_demo_server("http") as running:
        config = ServerConfig(name="slow", protocol="http", url=running.base_url + "/mcp", connect_timeout=10)
        asyncio.run(call_tool(config, "add", {"a": 1, "b": 1}))  # the session is open

        async def six() -> tuple[float, int]:
            peak = 0

            async def watch() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, fresh_pool.stats()["in_flight"])
                    await asyncio.sleep(0.01)

            watcher = asyncio.create_task(watch())
            started = time.perf_counter()
            outcomes = await asyncio.gather(
                *(call_tool(config, "slow_echo", {"text": str(i), "seconds": 0.4}) for i in range(6))
            )
            elapsed = time.perf_counter() - started
            watcher.cancel()
            assert [o.text() for o in outcomes] == [str(i) for i in range(6)]
            return elapsed, peak

        elapsed, peak = asyncio.run(six())
    assert peak == 2
    assert elapsed >= 3 * 0.4  # three rounds of two


_ORPHAN_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    sys.path.insert(0, {root!r})
    from registry import sessions
    from registry.connections import ServerConfig, call_tool
    configs = [
        ServerConfig(name=f"child-{{i}}", protocol="stdio", command={python!r},
                     args=("-m", "tests.support.mcp_demo_server", "stdio", "--stateful"),
                     env={{"PYTHONPATH": {root!r}, "PATH": os.environ["PATH"]}}, connect_timeout=30)
        for i in range(2)
    ]
    async def main():
        return [int((await call_tool(c, "pid", {{}})).text()) for c in configs]
    print(json.dumps(asyncio.run(main())), flush=True)
    if sys.argv[1] == "exit":
        sys.exit(0)
    time.sleep(600)
    """
)


@pytest.mark.parametrize("ending", ["killed", "exit"])
def test_no_child_outlives_its_parent(tmp_path: Path, ending: str) -> None:
    script = tmp_path / "parent.py"
    script.write_text(_ORPHAN_SCRIPT.format(root=str(ROOT), python=sys.executable))
    parent = subprocess.Popen(
        [sys.executable, str(script), "exit" if ending == "exit" else "stay"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        pids = json.loads(parent.stdout.readline())
        assert len(pids) == 2 and all(_running(pid) for pid in pids)
        if ending == "killed":
            parent.kill()  # SIGKILL: no atexit; the children see their stdin close
        parent.wait(timeout=30)
        assert all(_wait_gone(pid) for pid in pids), [p for p in pids if _running(p)]
    finally:
        if parent.poll() is None:
            parent.kill()
