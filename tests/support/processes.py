"""Start real servers (MCP servers, daphne) as subprocesses on free loopback ports for tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


def wait_for_http(url: str, timeout: float = 30.0, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before serving {url}")
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def demo_command(transport: str, *extra: str) -> list[str]:
    """The argv that runs the demo MCP server (usable as a stdio server's command + args)."""
    return [sys.executable, "-m", "tests.support.mcp_demo_server", transport, *extra]


def demo_env() -> dict[str, str]:
    """Environment entries a stdio demo server needs to import ``tests.support``."""
    return {"PYTHONPATH": str(ROOT)}


@contextmanager
def mcp_demo_server(
    transport: str, *extra: str, env: dict[str, str] | None = None, port: int | None = None
) -> Iterator[RunningServer]:
    """Run the demo MCP server over ``http`` or ``sse`` on a free port (or ``port``: a restarted
    server) for the duration of the block."""
    port = port or free_port()
    process = subprocess.Popen(
        [*demo_command(transport, "--port", str(port), *extra)],
        cwd=ROOT,
        env={**os.environ, **demo_env(), **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RunningServer(process, port)
    try:
        wait_for_port(port, process=process)
        yield server
    finally:
        server.stop()


def start_process(
    argv: Sequence[str], *, env: dict[str, str], cwd: Path = ROOT, log: Path | None = None
) -> subprocess.Popen[bytes]:
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115  (closed with the process)
    return subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
