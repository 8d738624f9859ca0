"""``rest`` tool sources: another netops's tool gateway registered as a server of this one.

The peer is a real netops under daphne on its embedded defaults (its own SQLite database), with the
demo MCP server registered and checked there, so its gateway offers the demo tools; API keys of
the peer are created with ``manage.py shell``. This netops (the test process) registers the peer
as an MCP server with protocol ``rest``, its key behind an ``env:`` secret reference, checks it and
calls its tools through :class:`ToolCatalog`, as the agent does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from django.contrib.auth.models import User
from django.test import Client

from registry import ratelimit
from registry.catalog import ToolCatalog, ToolResult
from registry.keys import api_key_create
from registry.models import MCPServer, ServerStatus
from registry.selectors import mcp_server_tool_definitions
from registry.services import mcp_servers_check_health
from tests.support.daphne import daphne, manage, standalone_env
from tests.support.processes import mcp_demo_server

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

READ_ONLY_TOOLS = {"add", "get_interface_status"}
DEMO_TOOLS = READ_ONLY_TOOLS | {"bounce_interface", "slow_echo", "fail"}
TIGHT_LIMIT = 3

# Runs inside ``manage.py shell`` against the peer's database.
_SETUP = f"""
import json, os
from django.contrib.auth.models import User
from registry.keys import api_key_create
from registry.models import MCPServer

owner = User.objects.create_user("peer-robot")
keys = {{
    name: api_key_create(owner=owner, name=name, level=level, rate_limit=limit)[1]
    for name, level, limit in (
        ("reader", "read_only", 1000), ("writer", "read_write", 1000), ("tight", "read_only", {TIGHT_LIMIT})
    )
}}
MCPServer.objects.create(name="lab", protocol="http", url=os.environ["TEST_MCP_URL"])
print("KEYS", json.dumps(keys))
"""


def _reference(body: dict[str, Any]) -> dict[str, Any]:
    """The reference API's part of a successful answer (``success``, ``data``), after checking the rest.

    Issue 11 adds the full ``content`` list (and ``structured_content`` when the tool sent it).
    """
    assert set(body) <= {"success", "data", "content", "structured_content"}, body
    assert isinstance(body["content"], list) and all("type" in item for item in body["content"]), body
    return {key: body[key] for key in ("success", "data")}


@dataclass(frozen=True)
class Peer:
    base_url: str
    keys: dict[str, str]

    @property
    def gateway(self) -> str:
        return f"{self.base_url}/api/mcp"


@pytest.fixture(scope="module")
def peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Peer]:
    """A second netops under daphne whose gateway offers the demo server's tools."""
    var_dir = tmp_path_factory.mktemp("peer")
    env = standalone_env(var_dir)
    with mcp_demo_server("http") as demo:
        manage(env, "migrate", "--noinput")
        out = manage({**env, "TEST_MCP_URL": demo.base_url + "/mcp"}, "shell", "-c", _SETUP)
        keys = json.loads(out.split("KEYS", 1)[1])
        assert "lab: healthy" in manage(env, "check_mcp_servers")
        with daphne(env, log=var_dir / "daphne.log") as running:
            yield Peer(running.base_url, keys)


def _register(
    peer: Peer, monkeypatch: pytest.MonkeyPatch, key: str, *, name: str = "peer", **fields: Any
) -> tuple[MCPServer, Any]:
    """Register the peer's gateway as a ``rest`` server using its key ``key``, and check it."""
    variable = f"NETOPS_PEER_{key.upper()}_KEY"  # matches SECRET_ENV_ALLOW's default *_KEY
    monkeypatch.setenv(variable, peer.keys[key])
    server = MCPServer(
        name=name,
        protocol="rest",
        url=peer.gateway,
        health_check="/healthz",
        auth_secret_ref=f"env:{variable}",
        **fields,
    )
    server.full_clean()
    server.save()
    outcome = mcp_servers_check_health(servers=[server])[0]
    server.refresh_from_db()
    return server, outcome


def _call(name: str, arguments: dict[str, Any]) -> ToolResult:
    return asyncio.run(ToolCatalog.load().call(name, arguments))


def _away_from_the_window_edge(seconds: float = 20) -> None:
    left = ratelimit.WINDOW_SECONDS - time.time() % ratelimit.WINDOW_SECONDS
    if left < seconds:
        time.sleep(left + 0.5)


def test_the_peer_becomes_healthy_with_the_tools_its_key_may_use_cached(
    peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, outcome = _register(peer, monkeypatch, "reader")
    assert outcome.ok, outcome.error
    assert server.status == ServerStatus.HEALTHY and server.last_error == ""
    # A read-only key sees only the read-only tools as available: only those are cached.
    assert {tool["name"] for tool in mcp_server_tool_definitions(server=server)} == READ_ONLY_TOOLS

    listed = httpx.get(
        f"{peer.gateway}/tools", headers={"Authorization": f"Bearer {peer.keys['reader']}"}, timeout=10
    ).json()["tools"]
    remote = {tool["name"]: tool for tool in listed}
    for tool in mcp_server_tool_definitions(server=server):
        assert tool["input_schema"] == remote[tool["name"]]["input_schema"]
        assert tool["description"] == remote[tool["name"]]["description"]
        assert tool["annotations"] == {"readOnlyHint": True, "x-permission": "read_only"}

    catalog = ToolCatalog.load()
    add = catalog.get("add")
    assert (add.source, add.source_kind, add.permission) == ("peer", "server", "read_only")
    assert add.input_schema["required"] == ["a", "b"]


def test_a_read_write_key_brings_the_write_tools_with_the_peers_levels(
    peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, outcome = _register(peer, monkeypatch, "writer")
    assert outcome.ok, outcome.error
    assert {tool["name"] for tool in mcp_server_tool_definitions(server=server)} == DEMO_TOOLS
    catalog = ToolCatalog.load()
    levels = {name: catalog.get(name).permission for name in DEMO_TOOLS}
    assert levels == {name: "read_only" if name in READ_ONLY_TOOLS else "read_write" for name in DEMO_TOOLS}


def test_tools_of_the_peer_are_called_through_the_catalog(
    peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _register(peer, monkeypatch, "writer")

    add = _call("add", {"a": 2, "b": 40})
    assert add.is_error is False, add.text()
    assert add.structured_content == {"result": 42}
    assert add.text() == "42"

    status = _call("get_interface_status", {"device": "r1", "interface": "et-0/0/1"})
    assert status.is_error is False
    assert status.structured_content == {
        "device": "r1",
        "interface": "et-0/0/1",
        "oper_status": "up",
        "speed": "10G",
    }

    # The tool's own failure and the peer's refusal of bad arguments are tool errors with their words.
    failure = _call("fail", {"reason": "link flapping"})
    assert failure.is_error is True and "link flapping" in failure.text()
    invalid = _call("add", {"a": "two", "b": 40})
    assert invalid.is_error is True
    assert "a:" in invalid.text() and "integer" in invalid.text(), invalid.text()


def test_this_netops_gateway_serves_the_peers_tools(peer: Peer, monkeypatch: pytest.MonkeyPatch) -> None:
    _register(peer, monkeypatch, "reader")
    owner = User.objects.create_user("client")
    _, plain = api_key_create(owner=owner, name="client", level="read_only")
    response = Client().post(
        "/api/mcp/tools/add",
        data=json.dumps({"a": 1, "b": 2}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {plain}"},
    )
    assert (response.status_code, _reference(response.json())) == (200, {"success": True, "data": 3})


def test_a_slow_peer_is_a_timeout_error(peer: Peer, monkeypatch: pytest.MonkeyPatch) -> None:
    _register(peer, monkeypatch, "writer", call_timeout=0.5)
    started = time.monotonic()
    result = _call("slow_echo", {"text": "late", "seconds": 5})
    assert time.monotonic() - started < 4
    assert result.is_error is True
    assert result.status == 504
    assert "slow_echo on peer did not answer within" in result.text()


def test_a_wrong_key_or_a_missing_secret_makes_the_peer_unhealthy(
    peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NETOPS_PEER_WRONG_KEY", peer.keys["reader"][:-1] + "x")
    wrong = MCPServer.objects.create(
        name="wrong-key",
        protocol="rest",
        url=peer.gateway,
        health_check="/healthz",
        auth_secret_ref="env:NETOPS_PEER_WRONG_KEY",
    )
    missing = MCPServer.objects.create(
        name="no-secret",
        protocol="rest",
        url=peer.gateway,
        health_check="/healthz",
        auth_secret_ref="env:NETOPS_PEER_UNSET_KEY",
    )
    outcomes = {o.server.name: o for o in mcp_servers_check_health(servers=[wrong, missing])}
    assert not outcomes["wrong-key"].ok and "401" in outcomes["wrong-key"].error
    assert peer.keys["reader"][:-1] not in outcomes["wrong-key"].error
    assert not outcomes["no-secret"].ok and "env:NETOPS_PEER_UNSET_KEY" in outcomes["no-secret"].error
    assert ToolCatalog.load().tools() == []


def test_the_peers_rate_limit_becomes_a_tool_error_saying_so(
    peer: Peer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _away_from_the_window_edge()
    _, outcome = _register(peer, monkeypatch, "tight", name="peer-tight")  # the tool list is request 1
    assert outcome.ok, outcome.error
    answers = [_call("add", {"a": i, "b": 0}) for i in range(TIGHT_LIMIT - 1)]
    assert [a.structured_content for a in answers] == [{"result": i} for i in range(TIGHT_LIMIT - 1)]

    limited = _call("add", {"a": 1, "b": 1})
    assert limited.is_error is True
    text = limited.text()
    assert text.startswith("rate limited by peer-tight; retry after "), text
    assert f"rate limit of {TIGHT_LIMIT} requests per hour exceeded" in text

    # Through this netops's own gateway the peer's refusal stays a rate limit (issue 11: it was a 502):
    # 429 with the peer's Retry-After, and its words.
    owner = User.objects.create_user("client")
    _, plain = api_key_create(owner=owner, name="client", level="read_only")
    response = Client().post(
        "/api/mcp/tools/add",
        data=json.dumps({"a": 1, "b": 1}),
        content_type="application/json",
        headers={"Authorization": f"Bearer {plain}"},
    )
    assert response.status_code == 429
    assert int(response["Retry-After"]) >= 0
    assert "rate limit" in response.json()["error"]
