"""netops' own MCP endpoint (``/mcp``) under a real daphne, driven by the mcp SDK's client.

The netops child runs on its embedded defaults (SQLite in its own var dir, no DATABASE_URL or
REDIS_URL) with a registered demo MCP server whose tools were cached by ``check_mcp_servers``, and
with NetBox "configured" at a loopback port where nothing listens: its tools are listed (listing
never touches the network) and calling one fails, as a tool error.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS, CallToolResult, Tool
from rest_framework.authtoken.models import Token

from registry.catalog import (
    BuiltinProvider,
    BuiltinTool,
    CallContext,
    ToolCatalog,
    register_provider,
    unregister_provider,
)
from registry.mcp_endpoint import MCPEndpoint, authenticate, transport_security
from tests.support.daphne import daphne, manage, standalone_env
from tests.support.processes import free_port, mcp_demo_server

# Runs inside ``manage.py shell`` against the child's database.
_SETUP = """
import json, os
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from registry.models import MCPServer

from django.contrib.auth.models import Permission

# Engineers who may propose changes: their tokens act at read_write (registry.key_policy).
propose = Permission.objects.get(codename="add_changerequest", content_type__app_label="netboxrw")
users = {name: User.objects.create_user(name) for name in ("alice", "bob")}
for user in users.values():
    user.user_permissions.add(propose)
tokens = {name: Token.objects.create(user=user).key for name, user in users.items()}
MCPServer.objects.create(name="lab", protocol="http", url=os.environ["TEST_MCP_URL"])
print("TOKENS", json.dumps(tokens))
"""

DEMO_TOOLS = ["add", "get_interface_status", "bounce_interface", "slow_echo", "fail"]

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Netops:
    port: int
    tokens: dict[str, str]
    demo_url: str
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


@pytest.fixture(scope="module")
def netops(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Netops]:
    """netops under daphne with users alice and bob (DRF tokens) and the demo server registered."""
    var_dir = tmp_path_factory.mktemp("var")
    env = standalone_env(
        var_dir,
        NETBOX_URL=f"http://127.0.0.1:{free_port()}",
        NETBOX_TOKEN="0123456789abcdef0123456789abcdef01234567",
    )
    with mcp_demo_server("http") as demo:
        manage(env, "migrate", "--noinput")
        out = manage({**env, "TEST_MCP_URL": demo.base_url + "/mcp"}, "shell", "-c", _SETUP)
        tokens = json.loads(out.split("TOKENS", 1)[1])
        assert "lab: healthy" in manage(env, "check_mcp_servers")
        log = var_dir / "daphne.log"
        with daphne(env, log=log) as running:
            yield Netops(running.port, tokens, demo.base_url + "/mcp", log)


def _client(url: str, headers: dict[str, str] | None = None, mode: str = "auto") -> Client:
    transport = streamable_http_client(url, http_client=httpx2.AsyncClient(headers=headers or {}, timeout=30))
    return Client(transport, mode=mode, read_timeout_seconds=30)


def _bearer(netops: Netops, user: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {netops.tokens[user]}"}


async def _list(client: Client) -> list[Tool]:
    return (await client.list_tools()).tools


# --- over the wire -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # 2026-07-28 per-request, and the handshake era
def test_lists_the_catalog_netbox_tools_first_with_schemas_and_annotations(netops: Netops, mode: str) -> None:
    async def scenario() -> tuple[list[Tool], list[Tool]]:
        async with _client(netops.url, _bearer(netops), mode) as client:
            ours = await _list(client)
        async with _client(netops.demo_url) as client:
            theirs = await _list(client)
        return ours, theirs

    tools, demo_tools = asyncio.run(scenario())
    names = [tool.name for tool in tools]
    netbox = [name for name in names if name.startswith("netbox_")]
    assert {"netbox_get_device", "netbox_update_device_status", "netbox_create_device"} <= set(netbox)
    # NetBox first, then the registered server's tools in the server's own order.
    assert names == netbox + [tool.name for tool in demo_tools]
    assert sorted(names[len(netbox) :]) == sorted(DEMO_TOOLS)

    by_name = {tool.name: tool for tool in tools}
    demo = {tool.name: tool for tool in demo_tools}
    for name in DEMO_TOOLS:
        assert by_name[name].input_schema == demo[name].input_schema
        assert by_name[name].description == demo[name].description
    assert by_name["add"].input_schema["required"] == ["a", "b"]
    assert by_name["add"].input_schema["properties"]["a"]["type"] == "integer"
    assert by_name["add"].annotations is not None and by_name["add"].annotations.read_only_hint is True
    bounce = by_name["bounce_interface"].annotations
    assert bounce is not None and bounce.destructive_hint is True and not bounce.read_only_hint
    status = by_name["get_interface_status"].annotations
    assert status is not None and status.read_only_hint is True and status.idempotent_hint is True

    read = by_name["netbox_get_device"]
    assert read.annotations is not None and read.annotations.read_only_hint is True
    assert read.input_schema["required"] == ["name"]
    write = by_name["netbox_update_device_status"]
    assert write.annotations is not None
    assert (write.annotations.read_only_hint, write.annotations.destructive_hint) == (False, True)
    assert write.annotations.idempotent_hint is True and write.annotations.open_world_hint is True
    assert "confirm" in write.input_schema["properties"]
    create = by_name["netbox_create_device"].annotations
    assert create is not None and create.destructive_hint is False


@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_calls_return_structured_results_and_tool_errors_as_is_error(netops: Netops, mode: str) -> None:
    async def scenario() -> dict[str, CallToolResult]:
        async with _client(netops.url, {"Authorization": f"Token {netops.tokens['alice']}"}, mode) as client:
            return {
                "add": await client.call_tool("add", {"a": 2, "b": 40}),
                "status": await client.call_tool(
                    "get_interface_status", {"device": "r1", "interface": "et-0/0/1"}
                ),
                "fail": await client.call_tool("fail", {"reason": "link flapping"}),
                "netbox": await client.call_tool("netbox_get_device", {"name": "r1"}),
            }

    results = asyncio.run(scenario())
    assert results["add"].is_error is False
    assert results["add"].structured_content == {"result": 42}
    assert results["add"].content[0].text == "42"
    assert results["status"].structured_content == {
        "device": "r1",
        "interface": "et-0/0/1",
        "oper_status": "up",
        "speed": "10G",
    }
    # A tool's own failure is a result with isError, not a protocol error.
    assert results["fail"].is_error is True
    assert "link flapping" in results["fail"].content[0].text
    # NetBox is unreachable: the built-in tool fails, and says so, as a tool result.
    assert results["netbox"].is_error is True
    assert "NetBox" in results["netbox"].content[0].text


def test_an_unknown_tool_is_a_protocol_error(netops: Netops) -> None:
    async def scenario() -> MCPError:
        async with _client(netops.url, _bearer(netops)) as client:
            with pytest.raises(MCPError) as caught:
                await client.call_tool("no_such_tool", {})
            return caught.value

    error = asyncio.run(scenario())
    assert error.code == INVALID_PARAMS
    assert error.message == "Unknown tool: no_such_tool"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Token"},
        {"Authorization": "Basic YWxpY2U6cHc="},
    ],
    ids=["none", "unknown-token", "empty", "basic"],
)
def test_requests_without_a_valid_token_get_401(netops: Netops, headers: dict[str, str]) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    for url in (netops.url, netops.url + "/"):
        response = httpx.post(
            url, json=body, headers={**headers, "Accept": "application/json, text/event-stream"}, timeout=10
        )
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert set(response.json()) == {"error"}


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        ({"Origin": "http://evil.example"}, 403),
        ({"Origin": "http://127.0.0.1.evil.example:8000"}, 403),
        ({"Host": "evil.example"}, 421),
        ({"Host": "rebind.example:8000", "Origin": "http://rebind.example:8000"}, 421),
    ],
    ids=["foreign-origin", "look-alike-origin", "foreign-host", "rebinding"],
)
def test_foreign_origin_or_host_is_refused_even_with_a_token(
    netops: Netops, extra: dict[str, str], status: int
) -> None:
    headers = {**_bearer(netops), "Accept": "application/json, text/event-stream", **extra}
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    response = httpx.post(netops.url, json=body, headers=headers, timeout=10)
    assert response.status_code == status
    # The same request from the right host and origin is served.
    allowed = {**headers, "Host": f"localhost:{netops.port}", "Origin": f"http://localhost:{netops.port}"}
    assert httpx.post(netops.url, json=body, headers=allowed, timeout=10).status_code == 200
    # The 2026-07-28 per-request path checks the same.
    modern = {**headers, "MCP-Protocol-Version": "2026-07-28"}
    list_tools = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {}}
    assert httpx.post(netops.url, json=list_tools, headers=modern, timeout=10).status_code == status


def test_two_clients_at_once_each_get_their_own_answers(netops: Netops) -> None:
    async def one(user: str) -> tuple[str, int]:
        async with _client(netops.url, _bearer(netops, user)) as client:
            tools = await _list(client)
            echo = await client.call_tool("slow_echo", {"text": f"hello {user}", "seconds": 1.5})
            return echo.content[0].text, len(tools)

    async def scenario() -> tuple[list[tuple[str, int]], float]:
        started = time.monotonic()
        answers = await asyncio.gather(one("alice"), one("bob"))
        return list(answers), time.monotonic() - started

    answers, elapsed = asyncio.run(scenario())
    assert [text for text, _ in answers] == ["hello alice", "hello bob"]
    assert answers[0][1] == answers[1][1] > len(DEMO_TOOLS)
    assert elapsed < 2.9, f"the two slow calls ran one after the other ({elapsed:.1f} s)"


def test_only_post_to_mcp_is_served_and_django_keeps_the_rest(netops: Netops) -> None:
    base = f"http://127.0.0.1:{netops.port}"
    response = httpx.post(base + "/mcp/other", json={}, headers=_bearer(netops), timeout=10)
    assert response.status_code == 404
    # Stateless: no server-to-client stream to open, so GET (and DELETE) are refused at once.
    for method in ("GET", "DELETE"):
        response = httpx.request(
            method, netops.url, headers={**_bearer(netops), "Accept": "text/event-stream"}, timeout=10
        )
        assert (response.status_code, response.headers["Allow"]) == (405, "POST")
    assert httpx.get(base + "/healthz", timeout=10).status_code == 200
    assert httpx.get(base + "/mcpx", timeout=10).status_code == 404  # Django's, not the endpoint's


# --- in-process: who the caller is, and the Host/Origin settings ------------------------------------


@pytest.mark.django_db
def test_a_token_authenticates_as_its_user_with_its_call_context(make_user: Callable[..., User]) -> None:
    alice = make_user("alice")
    key = Token.objects.create(user=alice).key
    for header in (f"Token {key}", f"Bearer {key}", f"bearer {key}", f"  Token   {key} "):
        caller = authenticate(header)
        assert caller is not None, header
        assert caller.username == "alice"
        assert caller.context == CallContext(user_id=alice.pk, via="mcp client alice")
    for header in ("", "Token", f"Basic {key}", f"Token {key}x", f"Token {key} extra", "Bearer  "):
        assert authenticate(header) is None, header
    alice.is_active = False
    alice.save()
    assert authenticate(f"Token {key}") is None


@pytest.fixture
def whoami() -> Iterator[list[CallContext]]:
    """A built-in tool that records the context of each call (a write tool records its requester so)."""
    seen: list[CallContext] = []

    async def handler(arguments: dict[str, Any], context: CallContext) -> dict[str, Any]:
        seen.append(context)
        return {"user_id": context.user_id}

    schema = {"type": "object", "properties": {"note": {"type": "string"}}}
    tool = BuiltinTool("whoami", "Who is calling.", schema, handler)
    register_provider(BuiltinProvider(source="probe", tools=lambda: [tool]))
    yield seen
    unregister_provider("probe")


@pytest.mark.django_db(transaction=True)
async def test_a_builtin_tool_called_through_the_endpoint_sees_the_token_user(
    make_user: Callable[..., User], whoami: list[CallContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In-process (the daphne child cannot get a test provider): app, SDK client, token, handler, tool."""
    loads: list[CallContext | None] = []
    original = ToolCatalog.aload.__func__  # type: ignore[attr-defined]

    async def counting(cls: type[ToolCatalog], **kwargs: Any) -> ToolCatalog:
        loads.append(kwargs.get("context"))
        return await original(cls, **kwargs)

    monkeypatch.setattr(ToolCatalog, "aload", classmethod(counting))
    alice = await database_sync_to_async(make_user)("alice")
    key = (await Token.objects.acreate(user=alice)).key
    app = MCPEndpoint(transport_security(["testserver"], []))
    for mode in ("auto", "legacy"):
        http = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), headers={"Authorization": f"Bearer {key}"}, timeout=10
        )
        async with (
            http,
            Client(streamable_http_client("http://testserver/mcp", http_client=http), mode=mode) as client,
        ):
            assert "whoami" in [tool.name for tool in (await client.list_tools()).tools]
            before = len(loads)
            result = await client.call_tool("whoami", {"note": "hi"})
            assert len(loads) == before + 1, mode  # one catalog load per request, even with Mcp-Param checks
        assert result.is_error is False
        assert result.structured_content == {"user_id": alice.pk}
    alice_context = CallContext(user_id=alice.pk, via="mcp client alice")
    assert whoami == [alice_context] * 2
    assert set(loads) == {alice_context}


def test_transport_security_follows_allowed_hosts() -> None:
    settings = transport_security(["localhost", "[::1]", ".example.com"], ["https://netops.example.com"])
    assert settings.enable_dns_rebinding_protection is True
    assert {"localhost", "localhost:*", "[::1]:*", "example.com", "example.com:*"} <= set(
        settings.allowed_hosts
    )
    assert {"http://localhost:*", "https://localhost", "https://netops.example.com"} <= set(
        settings.allowed_origins
    )
    assert transport_security(["*"], []).enable_dns_rebinding_protection is False
