"""The tool catalog: listing from cache without network, unique safe names, calls over every transport."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netops.errors import NotFoundError
from registry.catalog import (
    BuiltinProvider,
    BuiltinTool,
    ToolCatalog,
    register_provider,
    safe_name,
    unregister_provider,
)
from registry.models import MCPServer, ServerStatus
from registry.services import mcp_servers_check_health
from registry.tool_sync import server_tools_sync
from tests.support.processes import demo_command, demo_env, free_port, mcp_demo_server

SCHEMA = {"type": "object", "properties": {"device": {"type": "string"}}}


def _cached(name: str, *tools: str, status: str = ServerStatus.HEALTHY, enabled: bool = True) -> MCPServer:
    server = MCPServer.objects.create(
        name=name, protocol="http", url=f"http://127.0.0.1:9/{name}", status=status, enabled=enabled
    )
    definitions = [
        {
            "name": t,
            "description": f"{t} of {name}",
            "input_schema": SCHEMA,
            "annotations": {"readOnlyHint": True},
        }
        for t in tools
    ]
    server_tools_sync(server=server, tools=definitions)  # its first discovery: all accepted
    return server


@pytest.fixture
def builtin() -> Iterator[list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []

    async def handler(arguments: dict[str, Any], context: Any) -> dict[str, Any]:
        calls.append(arguments)
        return {"device": arguments["device"], "status": "active"}

    register_provider(
        BuiltinProvider(
            source="testbox",
            tools=lambda: [
                BuiltinTool(
                    name="get_device",
                    description="Read a device.",
                    input_schema=SCHEMA,
                    handler=handler,
                    annotations={"readOnlyHint": True},
                )
            ],
        )
    )
    yield calls
    unregister_provider("testbox")


@pytest.mark.django_db
def test_lists_only_enabled_healthy_servers_from_cache_without_network(
    monkeypatch: pytest.MonkeyPatch, builtin: list[dict[str, Any]]
) -> None:
    _cached("alpha", "ping", "traceroute")
    _cached("down", "reboot", status=ServerStatus.UNHEALTHY)
    _cached("fresh", "hello", status=ServerStatus.UNKNOWN)
    _cached("off", "shutdown", enabled=False)
    connects: list[Any] = []
    original = socket.socket.connect
    monkeypatch.setattr(
        socket.socket, "connect", lambda self, addr: connects.append(addr) or original(self, addr)
    )

    catalog = ToolCatalog.load()

    assert sorted(t.name for t in catalog.tools()) == ["get_device", "ping", "traceroute"]
    assert catalog.get("ping").source == "alpha"
    assert catalog.get("ping").description == "ping of alpha"
    assert catalog.get("ping").input_schema == SCHEMA
    assert catalog.get("ping").permission == "read_only"
    assert catalog.get("get_device").source_kind == "builtin"
    assert [a for a in connects if not isinstance(a, str)] == []  # no TCP connection was opened


@pytest.mark.django_db
def test_clashing_names_are_namespaced_per_server_and_builtins_keep_theirs(
    builtin: list[dict[str, Any]],
) -> None:
    # Names are given at first discovery (issue 11): the first server keeps the plain name, the
    # later one is namespaced; a built-in's name is never given to a server tool.
    _cached("site-a", "ping", "get_device")
    _cached("site b!", "ping")
    catalog = ToolCatalog.load()
    names = sorted(t.name for t in catalog.tools())
    assert names == ["get_device", "ping", "site-a__get_device", "site_b___ping"]
    assert catalog.get("site_b___ping").original_name == "ping"
    assert catalog.get("ping").source == "site-a"
    assert catalog.get("get_device").source == "testbox"


@pytest.mark.django_db
def test_selection_limits_the_servers() -> None:
    alpha = _cached("alpha", "ping")
    _cached("beta", "trace")
    catalog = ToolCatalog.load(server_ids=[alpha.pk], builtins=False)
    assert [t.name for t in catalog.tools()] == ["ping"]


def test_safe_name_is_openai_safe() -> None:
    assert safe_name("get.device status/v2") == "get_device_status_v2"
    long = safe_name("x" * 100)
    assert len(long) == 64
    assert safe_name("x" * 100) == long  # deterministic
    assert safe_name("y" * 100) != long


@pytest.mark.django_db
def test_unknown_tool_is_a_not_found_error() -> None:
    with pytest.raises(NotFoundError, match="no tool named 'nope'"):
        ToolCatalog.load().get("nope")


def _register(transport: str, base_url: str = "", **fields: Any) -> MCPServer:
    if transport == "stdio":
        command, *args = demo_command("stdio")
        server = MCPServer.objects.create(
            name="demo-stdio",
            protocol="stdio",
            command=command,
            args=args,
            env=demo_env(),
            health_check="",
            **fields,
        )
    else:
        path = "/mcp" if transport == "http" else "/sse"
        server = MCPServer.objects.create(
            name=f"demo-{transport}", protocol=transport, url=base_url + path, **fields
        )
    outcome = mcp_servers_check_health(servers=[server])[0]
    assert outcome.ok, outcome.error
    return server


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("transport", ["http", "sse", "stdio"])
def test_calls_tools_over_every_transport(transport: str) -> None:
    if transport == "stdio":
        _register("stdio")
        results = asyncio.run(_call_all())
    else:
        with mcp_demo_server(transport) as running:
            _register(transport, running.base_url)
            results = asyncio.run(_call_all())
    add, status, failure = results
    assert add.is_error is False
    assert add.structured_content == {"result": 5}
    assert add.text() == "5"
    assert add.duration_ms > 0
    assert status.structured_content == {
        "device": "r1",
        "interface": "et-0/0/0",
        "oper_status": "up",
        "speed": "10G",
    }
    assert failure.is_error is True
    assert "link flapping" in failure.text()


async def _call_all() -> list[Any]:
    catalog = await ToolCatalog.aload()
    return [
        await catalog.call("add", {"a": 2, "b": 3}),
        await catalog.call("get_interface_status", {"device": "r1", "interface": "et-0/0/0"}),
        await catalog.call("fail", {"reason": "link flapping"}),
    ]


@pytest.mark.django_db(transaction=True)
def test_slow_tool_times_out_as_a_tool_error() -> None:
    with mcp_demo_server("http") as running:
        _register("http", running.base_url)

        async def run() -> Any:
            catalog = await ToolCatalog.aload()
            return await catalog.call("slow_echo", {"text": "x", "seconds": 10}, timeout=0.5)

        result = asyncio.run(run())
    assert result.is_error
    assert "did not answer within 0.5 s" in result.text()
    assert result.duration_ms < 3000


@pytest.mark.django_db(transaction=True)
def test_server_gone_is_a_tool_error_not_an_exception() -> None:
    with mcp_demo_server("http") as running:
        _register("http", running.base_url)
    port_now_closed = ToolCatalog.load()

    result = asyncio.run(port_now_closed.call("add", {"a": 1, "b": 1}))
    assert result.is_error
    assert "add on demo-http failed" in result.text()


@pytest.mark.django_db(transaction=True)
def test_cancelling_a_call_cancels_it_on_the_server(tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    with mcp_demo_server("http", env={"CANCEL_MARKER": str(marker)}) as running:
        _register("http", running.base_url)

        async def run() -> None:
            catalog = await ToolCatalog.aload()
            task = asyncio.create_task(catalog.call("slow_echo", {"text": "stop-me", "seconds": 30}))
            await asyncio.sleep(1.0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(run())
        for _ in range(50):
            if marker.exists():
                break
            time.sleep(0.1)
    assert marker.read_text() == "cancelled:stop-me"


@pytest.mark.django_db(transaction=True)
def test_third_party_stdio_server_mcp_server_time() -> None:
    server = MCPServer.objects.create(
        name="time", protocol="stdio", command=sys.executable, args=["-m", "mcp_server_time"], health_check=""
    )
    outcome = mcp_servers_check_health(servers=[server])[0]
    assert outcome.ok, outcome.error

    async def run() -> Any:
        catalog = await ToolCatalog.aload(builtins=False)
        assert {t.name for t in catalog.tools()} == {"get_current_time", "convert_time"}
        return await catalog.call("get_current_time", {"timezone": "Europe/Amsterdam"})

    result = asyncio.run(run())
    assert not result.is_error, result.text()
    assert result.structured_content["timezone"] == "Europe/Amsterdam"
    assert "datetime" in result.structured_content


@pytest.mark.django_db(transaction=True)
def test_builtin_tools_are_called_in_process(builtin: list[dict[str, Any]]) -> None:
    async def run() -> Any:
        catalog = await ToolCatalog.aload()
        return await catalog.call("get_device", {"device": "ams-cor001"})

    result = asyncio.run(run())
    assert builtin == [{"device": "ams-cor001"}]
    assert result.structured_content == {"device": "ams-cor001", "status": "active"}


def test_unused_port_helper() -> None:
    assert 1024 < free_port() < 65536
