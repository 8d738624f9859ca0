"""The REST tool gateway (``/api/mcp/tools``) in the shape of the monitoring tool API: every status
code, the listing, the per-key hourly limit (exact at the boundary, shared with ``/mcp`` and by
several daphne processes through Redis), the audit log, and ``/mcp`` with API keys.

In-process through Django's AsyncClient (headers passed per request: ``AsyncClient(headers=...)``
defaults are dropped for ASGI requests), with test tools registered as a built-in provider; server
tools come from real demo MCP servers on loopback (or a closed port, for a server that is down).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS
from rest_framework.authtoken.models import Token

from registry import ratelimit
from registry.catalog import (
    BuiltinProvider,
    BuiltinTool,
    CallContext,
    ToolCatalog,
    register_provider,
    unregister_provider,
)
from registry.keys import api_key_create
from registry.mcp_endpoint import MCPEndpoint, transport_security
from registry.models import APIKey, MCPServer, ServerStatus, ToolCallAudit
from registry.services import mcp_servers_check_health
from registry.tool_sync import server_tools_sync
from tests.support.daphne import current_database_url, daphne, shared_env
from tests.support.processes import free_port, mcp_demo_server

pytestmark = pytest.mark.django_db(transaction=True)

DEVICE_SCHEMA = {
    "type": "object",
    "properties": {"device": {"type": "string"}, "count": {"type": "integer", "minimum": 1}},
    "required": ["device"],
    "additionalProperties": False,
}
EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")
SECRET_ARGUMENT = "snmp-community-Zq81xv"


def _reference(body: dict[str, Any]) -> dict[str, Any]:
    """The reference API's part of a successful answer (``success``, ``data``), after checking the rest.

    Issue 11 adds the full ``content`` list (and ``structured_content`` when the tool sent it).
    """
    assert set(body) <= {"success", "data", "content", "structured_content"}, body
    assert isinstance(body["content"], list) and all("type" in item for item in body["content"]), body
    return {key: body[key] for key in ("success", "data")}


# --- fixtures and helpers ---------------------------------------------------------------------------


@pytest.fixture
def probe() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Built-in test tools at every level, recording each call that reaches a handler."""
    calls: list[tuple[str, dict[str, Any]]] = []

    def tool(name: str, permission: str, schema: dict[str, Any], result: Any) -> BuiltinTool:
        async def handler(arguments: dict[str, Any], context: CallContext) -> Any:
            calls.append((name, arguments))
            if isinstance(result, Exception):
                raise result
            return result(arguments) if callable(result) else result

        return BuiltinTool(
            name,
            f"{name} ({permission})",
            schema,
            handler,
            annotations={"readOnlyHint": permission == "read_only"},
            permission=permission,  # type: ignore[arg-type]
        )

    tools = [
        tool(
            "gw_read",
            "read_only",
            DEVICE_SCHEMA,
            lambda a: {"device": a["device"], "count": a.get("count", 1)},
        ),
        tool("gw_list", "read_only", EMPTY_SCHEMA, ["r1", "r2"]),
        tool("gw_write", "read_write", DEVICE_SCHEMA, lambda a: {"queued": a["device"]}),
        tool("gw_admin", "admin", EMPTY_SCHEMA, {"rows": 3}),
        tool("gw_boom", "read_only", EMPTY_SCHEMA, RuntimeError("disk on fire")),
    ]
    register_provider(BuiltinProvider(source="gwtest", tools=lambda: tools))
    yield calls
    unregister_provider("gwtest")


def _make_key(level: str, rate_limit: int) -> tuple[APIKey, str]:
    make = (
        User.objects.create_superuser if level == "admin" else User.objects.create_user
    )  # admin keys: superusers only
    owner = make(f"{level}-{uuid.uuid4().hex[:8]}")
    return api_key_create(owner=owner, name=f"{level} key", level=level, rate_limit=rate_limit)


async def _key(level: str = "read_only", *, rate_limit: int = 1000) -> tuple[APIKey, str]:
    return await sync_to_async(_make_key)(level, rate_limit)


class _Gateway:
    """An async client of the gateway sending one Authorization header with every request."""

    def __init__(self, key: str | None = None, *, authorization: str | None = None) -> None:
        self.client = AsyncClient()
        value = authorization or (f"Bearer {key}" if key else None)
        self.headers = {"Authorization": value} if value else {}

    async def call(self, name: str, arguments: Any = None, *, raw: str | None = None) -> Any:
        body = raw if raw is not None else ("" if arguments is None else json.dumps(arguments))
        return await self.client.post(
            f"/api/mcp/tools/{name}", data=body, content_type="application/json", headers=self.headers
        )

    async def tools(self) -> Any:
        return await self.client.get("/api/mcp/tools", headers=self.headers)


def _rate(response: Any) -> tuple[int, int, int]:
    return tuple(int(response[name]) for name in RATE_HEADERS)  # type: ignore[return-value]


def _error(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"], str) and body["error"]
    return str(body["error"])


async def _away_from_the_window_edge(seconds: float = 30) -> None:
    """Limits count per clock hour: wait out the last seconds of an hour rather than straddle it."""
    left = ratelimit.WINDOW_SECONDS - time.time() % ratelimit.WINDOW_SECONDS
    if left < seconds:
        await asyncio.sleep(left + 0.5)


def _down_server(**fields: Any) -> MCPServer:
    """A server that was healthy (its tools are cached) and is now down: nothing listens on its port."""
    tools = [
        {
            "name": name,
            "description": f"{name} on the lab",
            "input_schema": {"type": "object", "properties": {"host": {"type": "string"}}},
            "annotations": {"readOnlyHint": True},
        }
        for name in ("ping", "reboot")
    ]
    fields.setdefault("name", "down-lab")
    fields.setdefault("status", ServerStatus.HEALTHY)
    server = MCPServer.objects.create(
        protocol="http",
        url=f"http://127.0.0.1:{free_port()}/mcp",
        connect_timeout=2,
        call_timeout=5,
        **fields,
    )
    server_tools_sync(server=server, tools=tools)  # its first discovery: every tool accepted
    return server


def _register_demo(base_url: str, **fields: Any) -> MCPServer:
    server = MCPServer.objects.create(name="lab", protocol="http", url=base_url + "/mcp", **fields)
    outcome = mcp_servers_check_health(servers=[server])[0]
    assert outcome.ok, outcome.error
    return server


async def _audit_rows() -> list[ToolCallAudit]:
    return [row async for row in ToolCallAudit.objects.order_by("at", "id")]


# --- 200 -------------------------------------------------------------------------------------------


async def test_a_call_answers_success_and_the_tools_data(probe: list[tuple[str, dict[str, Any]]]) -> None:
    _, plain = await _key("read_only")
    gateway = _Gateway(plain)

    response = await gateway.call("gw_read", {"device": "ams-cor001", "count": 3})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert _reference(response.json()) == {"success": True, "data": {"device": "ams-cor001", "count": 3}}

    # A list result is the data itself (not wrapped); no body at all means no arguments.
    response = await gateway.call("gw_list")
    assert (response.status_code, _reference(response.json())) == (
        200,
        {"success": True, "data": ["r1", "r2"]},
    )
    response = await gateway.call("gw_list", {})
    assert _reference(response.json()) == {"success": True, "data": ["r1", "r2"]}
    assert probe == [("gw_read", {"device": "ams-cor001", "count": 3}), ("gw_list", {}), ("gw_list", {})]


async def test_a_server_tool_is_called_on_its_server_and_answers_its_data() -> None:
    _, plain = await _key("read_only")
    with mcp_demo_server("http") as demo:
        await sync_to_async(_register_demo)(demo.base_url)
        gateway = _Gateway(plain)
        added = await gateway.call("add", {"a": 20, "b": 22})
        status = await gateway.call("get_interface_status", {"device": "r1", "interface": "et-0/0/1"})
    assert (added.status_code, _reference(added.json())) == (200, {"success": True, "data": 42})
    assert status.status_code == 200
    assert status.json()["data"] == {
        "device": "r1",
        "interface": "et-0/0/1",
        "oper_status": "up",
        "speed": "10G",
    }


# --- 400 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "field", "wording"),
    [
        ({}, "device", "required"),
        ({"count": 2}, "device", "required"),
        ({"device": 5}, "device", "not of type 'string'"),
        ({"device": "r1", "count": "three"}, "count", "not of type 'integer'"),
        ({"device": "r1", "count": 0}, "count", "minimum"),
        ({"device": "r1", "colour": "red"}, "colour", "unknown argument"),
    ],
    ids=["missing", "missing-with-others", "wrong-type", "wrong-type-optional", "below-minimum", "unknown"],
)
async def test_arguments_invalid_against_the_schema_are_400_naming_the_field(
    probe: list[tuple[str, dict[str, Any]]], arguments: dict[str, Any], field: str, wording: str
) -> None:
    _, plain = await _key("read_only")
    response = await _Gateway(plain).call("gw_read", arguments)
    assert response.status_code == 400
    message = _error(response)
    assert field in message and wording in message, message
    assert probe == []  # the handler never saw them
    assert _rate(response)[:2] == (1000, 999)


async def test_invalid_arguments_of_a_server_tool_are_refused_before_the_network() -> None:
    _, plain = await _key("read_only")
    await sync_to_async(_down_server)()  # would answer 502 if the call reached the network
    # The cached schema of ``ping`` says host is a string.
    response = await _Gateway(plain).call("ping", {"host": 1})
    assert response.status_code == 400
    assert "host" in _error(response)


@pytest.mark.parametrize(
    ("raw", "wording"),
    [
        ("{not json", "not valid JSON"),
        ('{"device": "r1"', "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('"r1"', "JSON object"),
        ("null", "JSON object"),
        ("42", "JSON object"),
    ],
    ids=["garbage", "truncated", "array", "string", "null", "number"],
)
async def test_a_body_that_is_not_a_json_object_is_400(
    probe: list[tuple[str, dict[str, Any]]], raw: str, wording: str
) -> None:
    _, plain = await _key("read_only")
    response = await _Gateway(plain).call("gw_read", raw=raw)
    assert response.status_code == 400
    assert wording in _error(response)
    assert probe == []
    assert all(name in response for name in RATE_HEADERS)


# --- 401 -------------------------------------------------------------------------------------------


async def test_a_missing_or_bad_key_is_401_and_a_drf_token_is_not_accepted(
    probe: list[tuple[str, dict[str, Any]]],
) -> None:
    _, plain = await _key("admin")
    superuser = await sync_to_async(User.objects.create_superuser)("root", "root@example.com", "pw-1")
    token = (await Token.objects.acreate(user=superuser)).key
    wrong_secret = plain[:-1] + ("A" if plain[-1] != "A" else "B")
    refused = [
        _Gateway(),
        _Gateway(authorization="Bearer"),
        _Gateway(authorization="Bearer nop_garbage.notakey"),
        _Gateway(authorization=f"Bearer {wrong_secret}"),
        _Gateway(authorization=f"Basic {plain}"),
        _Gateway(
            authorization=f"Token {token}"
        ),  # a DRF token of a superuser: /mcp takes it, not the gateway
        _Gateway(authorization=f"Bearer {token}"),
    ]
    for gateway in refused:
        for response in (await gateway.call("gw_read", {"device": "r1"}), await gateway.tools()):
            assert response.status_code == 401, gateway.headers
            assert response["WWW-Authenticate"] == "Bearer"
            assert "authentication required" in _error(response) or "invalid" in _error(response)
            assert not any(name in response for name in RATE_HEADERS)
    assert probe == []
    assert await ToolCallAudit.objects.acount() == 0  # nobody to attribute the calls to
    assert (await _Gateway(plain).call("gw_read", {"device": "r1"})).status_code == 200


# --- 403 -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("level", "tool", "needed"),
    [
        ("read_only", "gw_write", "read_write"),
        ("read_only", "gw_admin", "admin"),
        ("read_write", "gw_admin", "admin"),
    ],
)
async def test_a_tool_above_the_keys_level_is_403(
    probe: list[tuple[str, dict[str, Any]]], level: str, tool: str, needed: str
) -> None:
    _, plain = await _key(level)
    response = await _Gateway(plain).call(tool, {"device": "r1"} if tool == "gw_write" else {})
    assert response.status_code == 403
    assert _error(response) == f"{tool} needs the {needed} level; this key has {level}"
    assert probe == []
    assert _rate(response)[1] == 999


async def test_levels_are_ordered_read_only_read_write_admin(probe: list[tuple[str, dict[str, Any]]]) -> None:
    expected = {
        "read_only": {"gw_read": 200, "gw_write": 403, "gw_admin": 403},
        "read_write": {"gw_read": 200, "gw_write": 200, "gw_admin": 403},
        "admin": {"gw_read": 200, "gw_write": 200, "gw_admin": 200},
    }
    for level, statuses in expected.items():
        _, plain = await _key(level)
        gateway = _Gateway(plain)
        for tool, status in statuses.items():
            response = await gateway.call(tool, {} if tool == "gw_admin" else {"device": "r1"})
            assert response.status_code == status, (level, tool, response.content)


async def test_a_per_tool_override_on_a_server_makes_a_tool_admin_only() -> None:
    await sync_to_async(_down_server)(tool_permissions={"reboot": "admin"})
    _, read_write = await _key("read_write")
    _, admin = await _key("admin")

    refused = await _Gateway(read_write).call("reboot", {"host": "r1"})
    assert refused.status_code == 403
    assert _error(refused) == "reboot needs the admin level; this key has read_write"
    # The same key may call the server's other tool (read-only by its annotations): it goes out to
    # the server, which is down.
    assert (await _Gateway(read_write).call("ping", {"host": "r1"})).status_code == 502
    # An admin key passes the check and reaches the (down) server.
    assert (await _Gateway(admin).call("reboot", {"host": "r1"})).status_code == 502


async def test_a_server_wide_level_applies_to_every_tool_of_the_server_and_the_override_wins() -> None:
    await sync_to_async(_down_server)(tool_permission="read_write", tool_permissions={"ping": "read_only"})
    _, read_only = await _key("read_only")
    reboot = await _Gateway(read_only).call(
        "reboot", {}
    )  # read-only by its annotations, read_write by the server
    assert reboot.status_code == 403
    assert "needs the read_write level" in _error(reboot)
    assert (await _Gateway(read_only).call("ping", {})).status_code == 502


# --- 404, 405 --------------------------------------------------------------------------------------


async def test_an_unknown_tool_is_404(probe: list[tuple[str, dict[str, Any]]]) -> None:
    _, plain = await _key("admin")
    response = await _Gateway(plain).call("no_such_tool", {"x": 1})
    assert response.status_code == 404
    assert _error(response) == "no tool named 'no_such_tool'"
    assert _rate(response)[1] == 999


async def test_wrong_methods_are_405() -> None:
    _, plain = await _key("admin")
    headers = {"Authorization": f"Bearer {plain}"}
    client = AsyncClient()
    assert (await client.get("/api/mcp/tools/gw_read", headers=headers)).status_code == 405
    assert (
        await client.post("/api/mcp/tools", data="{}", content_type="application/json", headers=headers)
    ).status_code == 405


# --- 502, 504, 500 ---------------------------------------------------------------------------------


async def test_a_server_that_is_down_is_502_with_the_reason() -> None:
    server = await sync_to_async(_down_server)()
    _, plain = await _key("read_only")
    started = time.monotonic()
    response = await _Gateway(plain).call("ping", {"host": "r1"})
    assert response.status_code == 502
    message = _error(response)
    assert message.startswith(f"ping on {server.name} failed:"), message
    assert time.monotonic() - started < 5
    assert all(name in response for name in RATE_HEADERS)


async def test_a_tool_that_does_not_answer_in_the_servers_call_timeout_is_504() -> None:
    _, plain = await _key("read_write")  # slow_echo has no read-only hint: read_write
    with mcp_demo_server("http") as demo:
        await sync_to_async(_register_demo)(demo.base_url, call_timeout=0.5)
        started = time.monotonic()
        response = await _Gateway(plain).call("slow_echo", {"text": "hello", "seconds": 10})
        elapsed = time.monotonic() - started
        # The server itself is fine: a quick call on it still answers.
        quick = await _Gateway(plain).call("slow_echo", {"text": "quick", "seconds": 0})
    assert response.status_code == 504, response.content
    assert "slow_echo on lab did not answer within" in _error(response)
    assert elapsed < 5
    assert (quick.status_code, _reference(quick.json())) == (200, {"success": True, "data": "quick"})


async def test_an_unexpected_exception_in_a_builtin_tool_is_502_with_its_message(
    probe: list[tuple[str, dict[str, Any]]],
) -> None:
    """ToolCatalog.call turns every exception of a tool into an error result (status 502), so a tool
    cannot make the gateway answer 500: that is left to failures of the gateway's own code."""
    _, plain = await _key("read_only")
    response = await _Gateway(plain).call("gw_boom")
    assert response.status_code == 502
    assert _error(response) == "gw_boom on gwtest failed: RuntimeError: disk on fire"
    assert probe == [("gw_boom", {})]


async def test_an_application_error_of_a_builtin_tool_keeps_its_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A built-in tool's expected failure (ApplicationError) answers with its own status and words."""
    from netops.errors import ApplicationError

    async def unavailable(arguments: dict[str, Any], context: CallContext) -> Any:
        raise ApplicationError("NetBox is not configured", 503)

    register_provider(
        BuiltinProvider("gwtest2", lambda: [BuiltinTool("gw_unavailable", "x", EMPTY_SCHEMA, unavailable)])
    )
    try:
        _, plain = await _key("read_only")
        response = await _Gateway(plain).call("gw_unavailable")
    finally:
        unregister_provider("gwtest2")
    assert (response.status_code, _error(response)) == (503, "NetBox is not configured")


async def test_a_failure_of_the_gateways_own_call_path_is_500_with_a_request_id(
    probe: list[tuple[str, dict[str, Any]]], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The only way to a 500: the catalog itself raising (a bug), simulated here."""

    async def broken(self: ToolCatalog, name: str, arguments: dict[str, Any], **kwargs: Any) -> Any:
        raise KeyError("catalog bug")

    monkeypatch.setattr(ToolCatalog, "call", broken)
    _, plain = await _key("read_only")
    response = await _Gateway(plain).call("gw_read", {"device": "r1"})
    assert response.status_code == 500
    body = response.json()
    assert set(body) == {"error", "request_id"}
    assert body["request_id"] and body["error"] == f"internal error; quote request id {body['request_id']}"
    assert "catalog bug" not in body["error"]
    assert any(r.getMessage().startswith("gateway failed while") and r.exc_info for r in caplog.records)
    assert all(name in response for name in RATE_HEADERS)
    [row] = await _audit_rows()
    assert (row.status, row.request_id) == (500, body["request_id"])


async def test_a_failure_while_loading_the_catalog_is_still_a_json_500(
    probe: list[tuple[str, dict[str, Any]]],
) -> None:
    """A built-in provider that raises when asked for its tools (a bug in netops): the gateway's
    error format holds for 500 too (``{"error": ..., "request_id": ...}``), the call is audited."""

    def broken() -> list[BuiltinTool]:
        raise RuntimeError("provider bug")

    register_provider(BuiltinProvider("broken", broken))
    try:
        _, plain = await _key("read_only")
        client = AsyncClient(raise_request_exception=False)
        headers = {"Authorization": f"Bearer {plain}"}
        call = await client.post(
            "/api/mcp/tools/gw_read", data="{}", content_type="application/json", headers=headers
        )
        listing = await client.get("/api/mcp/tools", headers=headers)
    finally:
        unregister_provider("broken")
    for response in (call, listing):
        assert response.status_code == 500
        assert response["Content-Type"] == "application/json", response.content[:200]
        body = response.json()
        assert body["request_id"] and "provider bug" not in body["error"]
        assert all(name in response for name in RATE_HEADERS)
    assert [row.status for row in await _audit_rows()] == [500]


# --- GET /api/mcp/tools ----------------------------------------------------------------------------


async def test_the_listing_has_every_tool_with_its_level_and_availability_for_the_key(
    probe: list[tuple[str, dict[str, Any]]],
) -> None:
    await sync_to_async(_down_server)(tool_permissions={"reboot": "admin"})
    levels = {"gw_read": "read_only", "gw_list": "read_only", "gw_write": "read_write", "gw_admin": "admin"}
    levels |= {"gw_boom": "read_only", "ping": "read_only", "reboot": "admin"}
    for key_level, available in {
        "read_only": {"gw_read", "gw_list", "gw_boom", "ping"},
        "read_write": {"gw_read", "gw_list", "gw_boom", "ping", "gw_write"},
        "admin": set(levels),
    }.items():
        _, plain = await _key(key_level, rate_limit=50)
        response = await _Gateway(plain).tools()
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"tools", "your_permission"}
        assert body["your_permission"] == key_level
        tools = {tool["name"]: tool for tool in body["tools"]}
        assert len(tools) == len(body["tools"])  # unique names
        assert set(tools) == set(levels)
        for tool in body["tools"]:
            assert set(tool) == {
                "name",
                "description",
                "permission_required",
                "available",
                "input_schema",
                "source",
            }
            assert tool["permission_required"] == levels[tool["name"]]
            assert tool["available"] is (tool["name"] in available), (key_level, tool)
        assert _rate(response)[:2] == (50, 49)
    assert tools["gw_read"]["input_schema"] == DEVICE_SCHEMA
    assert tools["gw_read"]["description"] == "gw_read (read_only)"
    assert (tools["gw_read"]["source"], tools["ping"]["source"]) == ("gwtest", "down-lab")
    assert tools["ping"]["input_schema"] == {"type": "object", "properties": {"host": {"type": "string"}}}
    assert [t["name"] for t in body["tools"]][:5] == ["gw_read", "gw_list", "gw_write", "gw_admin", "gw_boom"]
    assert probe == []
    assert await ToolCallAudit.objects.acount() == 0  # listing is not a call


async def test_the_listing_shows_only_usable_servers() -> None:
    await sync_to_async(_down_server)(name="healthy-lab")
    await sync_to_async(_down_server)(name="off-lab", enabled=False)
    await sync_to_async(_down_server)(name="sick-lab", status=ServerStatus.UNHEALTHY)
    _, plain = await _key("admin")
    body = (await _Gateway(plain).tools()).json()
    assert {tool["source"] for tool in body["tools"]} == {"healthy-lab"}


def _digest(raw: str) -> str:
    """What the audit stores: SHA-256 of the arguments as canonical JSON (same for /mcp), or of the raw
    body when it is not JSON."""
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return hashlib.sha256(raw.encode()).hexdigest()
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# --- 429 and the rate-limit headers ----------------------------------------------------------------


async def test_the_limit_is_exact_at_the_boundary_with_headers_on_every_response(
    probe: list[tuple[str, dict[str, Any]]],
) -> None:
    await _away_from_the_window_edge()
    _, plain = await _key("read_only", rate_limit=5)
    gateway = _Gateway(plain)
    responses = [await gateway.call("gw_read", {"device": f"r{i}"}) for i in range(1, 7)]

    assert [r.status_code for r in responses] == [200, 200, 200, 200, 200, 429]
    assert [_rate(r)[:2] for r in responses] == [(5, 4), (5, 3), (5, 2), (5, 1), (5, 0), (5, 0)]
    resets = {_rate(r)[2] for r in responses}
    assert len(resets) == 1
    [reset] = resets
    now = time.time()
    assert reset % ratelimit.WINDOW_SECONDS == 0 and now < reset <= now + ratelimit.WINDOW_SECONDS
    limited = responses[-1]
    assert _error(limited) == "rate limit of 5 requests per hour exceeded"
    retry_after = int(limited["Retry-After"])
    assert 0 < retry_after <= ratelimit.WINDOW_SECONDS and abs(now + retry_after - reset) <= 2
    assert not any("Retry-After" in r for r in responses[:-1])
    assert len(probe) == 5  # the sixth never reached the tool
    # Still limited, whatever the request: a call that would be 404 or 400, and the listing.
    for response in (
        await gateway.call("no_such_tool"),
        await gateway.call("gw_read", raw="{bad"),
        await gateway.tools(),
    ):
        assert response.status_code == 429
        assert _rate(response) == (5, 0, reset) and "Retry-After" in response


async def test_every_response_after_authentication_carries_the_rate_headers(
    probe: list[tuple[str, dict[str, Any]]],
) -> None:
    """4xx and 5xx answers count and say so: 400, 403, 404, 502, then a 200 and the listing."""
    await _away_from_the_window_edge()
    await sync_to_async(_down_server)()
    _, plain = await _key("read_only", rate_limit=10)
    gateway = _Gateway(plain)
    responses = [
        await gateway.call("gw_read", raw="[]"),
        await gateway.call("gw_read", {"count": 1}),
        await gateway.call("gw_write", {"device": "r1"}),
        await gateway.call("nope"),
        await gateway.call("gw_boom"),
        await gateway.call("ping", {"host": "r1"}),
        await gateway.call("gw_read", {"device": "r1"}),
        await gateway.tools(),
    ]
    assert [r.status_code for r in responses] == [400, 400, 403, 404, 502, 502, 200, 200]
    assert [_rate(r)[1] for r in responses] == [9, 8, 7, 6, 5, 4, 3, 2]
    assert {_rate(r)[0] for r in responses} == {10}


async def test_keys_have_separate_limits(probe: list[tuple[str, dict[str, Any]]]) -> None:
    await _away_from_the_window_edge()
    _, first = await _key("read_only", rate_limit=1)
    _, second = await _key("read_only", rate_limit=1)
    assert (await _Gateway(first).call("gw_list")).status_code == 200
    assert (await _Gateway(first).call("gw_list")).status_code == 429
    assert (await _Gateway(second).call("gw_list")).status_code == 200


# --- the audit log ---------------------------------------------------------------------------------


async def test_every_call_is_audited_once_with_status_and_digest_never_the_arguments(
    probe: list[tuple[str, dict[str, Any]]],
) -> None:
    key, plain = await _key("read_only")
    owner = await User.objects.aget(pk=key.owner_id)
    gateway = _Gateway(plain)
    calls = [
        ("gw_read", json.dumps({"device": SECRET_ARGUMENT}), 200),
        ("gw_read", json.dumps({"count": SECRET_ARGUMENT}), 400),
        ("gw_read", "{" + SECRET_ARGUMENT, 400),
        ("gw_write", json.dumps({"device": SECRET_ARGUMENT}), 403),
        ("nope", json.dumps({"device": SECRET_ARGUMENT}), 404),
        ("gw_boom", json.dumps({}), 502),
        ("gw_list", "", 200),
    ]
    for tool, raw, status in calls:
        response = await gateway.call(tool, raw=raw)
        assert response.status_code == status, (tool, response.content)
    await gateway.tools()  # a listing is not a call
    await _Gateway().call("gw_read", {"device": SECRET_ARGUMENT})  # 401: no caller to audit

    rows = await _audit_rows()
    assert [(row.tool, row.status) for row in rows] == [(tool, status) for tool, _, status in calls]
    for row, (_, raw, _) in zip(rows, calls, strict=True):
        assert row.arguments_digest == _digest(raw)
        assert row.via == "gateway"
        assert row.api_key_id == key.pk
        assert row.user_id == owner.pk
        assert row.caller == f"{owner.username} (key {key.prefix})"
        assert row.duration_ms > 0
        assert row.request_id
    assert len({row.request_id for row in rows}) == len(rows)
    stored = [repr(value) async for row in ToolCallAudit.objects.values_list() for value in row]
    assert not any(SECRET_ARGUMENT in value for value in stored)


async def test_a_rate_limited_call_is_audited_with_the_digest_of_its_arguments(
    probe: list[tuple[str, dict[str, Any]]],
) -> None:
    await _away_from_the_window_edge()
    _, plain = await _key("read_only", rate_limit=1)
    gateway = _Gateway(plain)
    assert (await gateway.call("gw_read", {"device": "r1"})).status_code == 200
    raw = json.dumps({"device": "r2"})
    assert (await gateway.call("gw_read", raw=raw)).status_code == 429
    rows = await _audit_rows()
    assert [(row.tool, row.status) for row in rows] == [("gw_read", 200), ("gw_read", 429)]
    assert rows[1].arguments_digest == _digest(raw)


# --- /mcp with API keys ----------------------------------------------------------------------------


class _PostCounter:
    """Counts the POSTs an MCP client sends (the requests the limiter counts)."""

    def __init__(self) -> None:
        self.posts = 0

    async def __call__(self, request: httpx2.Request) -> None:
        if request.method == "POST":
            self.posts += 1


def _mcp_client(
    key: str, counter: _PostCounter | None = None, mode: str = "legacy"
) -> tuple[httpx2.AsyncClient, Client]:
    app = MCPEndpoint(transport_security(["testserver"], []))
    http = httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app),
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
        event_hooks={"request": [counter]} if counter else None,
    )
    return http, Client(streamable_http_client("http://testserver/mcp", http_client=http), mode=mode)


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_mcp_with_a_read_only_key_lists_and_calls_only_read_only_tools(
    probe: list[tuple[str, dict[str, Any]]], mode: str
) -> None:
    key, read_only = await _key("read_only")
    _, read_write = await _key("read_write")

    http, client = _mcp_client(read_only, mode=mode)
    async with http, client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == {"gw_read", "gw_list", "gw_boom"}
        result = await client.call_tool("gw_read", {"device": "r1"})
        assert result.is_error is False and result.structured_content == {"device": "r1", "count": 1}
        for hidden in ("gw_write", "gw_admin"):
            with pytest.raises(MCPError) as caught:
                await client.call_tool(hidden, {"device": "r1"})
            assert (caught.value.code, caught.value.message) == (INVALID_PARAMS, f"Unknown tool: {hidden}")

    http, client = _mcp_client(read_write, mode=mode)
    async with http, client:
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert names == {"gw_read", "gw_list", "gw_boom", "gw_write"}
        result = await client.call_tool("gw_write", {"device": "r9"})
        assert result.is_error is False and result.structured_content == {"queued": "r9"}

    assert probe == [("gw_read", {"device": "r1"}), ("gw_write", {"device": "r9"})]
    rows = await _audit_rows()
    assert [(row.via, row.tool, row.status) for row in rows] == [
        ("mcp", "gw_read", 200),
        ("mcp", "gw_write", 200),
    ]
    assert rows[0].api_key_id == key.pk


async def test_mcp_requests_count_against_the_same_limit_as_the_gateway(
    probe: list[tuple[str, dict[str, Any]]],
) -> None:
    await _away_from_the_window_edge()
    limit = 12
    _, plain = await _key("read_only", rate_limit=limit)
    gateway = _Gateway(plain)
    assert _rate(await gateway.call("gw_list"))[1] == limit - 1

    counter = _PostCounter()
    http, client = _mcp_client(plain, counter)
    async with http, client:
        await client.list_tools()
        await client.call_tool("gw_list", {})
    used = 1 + counter.posts
    assert 2 <= counter.posts < limit - 1

    response = await gateway.call("gw_list")
    assert response.status_code == 200
    assert _rate(response)[1] == limit - used - 1  # every POST to /mcp was counted

    while _rate(response)[1] > 0:  # use up the rest through the gateway
        response = await gateway.call("gw_list")
        assert response.status_code == 200
    app = MCPEndpoint(transport_security(["testserver"], []))
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), timeout=10) as raw:
        refused = await raw.post(
            "http://testserver/mcp",
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
            headers={"Authorization": f"Bearer {plain}", "Accept": "application/json, text/event-stream"},
        )
    assert refused.status_code == 429
    assert refused.json() == {"error": f"rate limit of {limit} requests per hour exceeded"}
    assert refused.headers["X-RateLimit-Limit"] == str(limit)
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert int(refused.headers["Retry-After"]) > 0
    assert (await gateway.call("gw_list")).status_code == 429


# --- several processes -----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_limit_holds_across_two_daphne_processes_sharing_redis(
    require_postgres: None, redis_url: str, tmp_path: Path
) -> None:
    """Two daphne children on the test PostgreSQL database and one Redis: requests alternate between
    them and the key's limit holds for the sum, with one countdown and one reset time."""
    asyncio.run(_away_from_the_window_edge())
    key, plain = _make_key("read_only", 6)
    env = shared_env(tmp_path, database_url=current_database_url(), redis_url=redis_url)
    headers = {"Authorization": f"Bearer {plain}"}
    with mcp_demo_server("http") as demo:
        _register_demo(demo.base_url)
        with daphne(env, log=tmp_path / "a.log") as first, daphne(env, log=tmp_path / "b.log") as second:
            responses = [
                httpx.post(
                    f"{(first, second)[i % 2].base_url}/api/mcp/tools/add",
                    json={"a": i, "b": 1},
                    headers=headers,
                    timeout=20,
                )
                for i in range(9)
            ]
    assert [r.status_code for r in responses] == [200] * 6 + [429] * 3, [r.text for r in responses]
    assert [r.json()["data"] for r in responses[:6]] == [1, 2, 3, 4, 5, 6]
    assert [int(r.headers["X-RateLimit-Remaining"]) for r in responses] == [5, 4, 3, 2, 1, 0, 0, 0, 0]
    assert {r.headers["X-RateLimit-Limit"] for r in responses} == {"6"}
    assert len({r.headers["X-RateLimit-Reset"] for r in responses}) == 1
    assert all("Retry-After" in r.headers for r in responses[6:])
    # Both processes wrote their calls to the shared audit log.
    statuses = list(
        ToolCallAudit.objects.filter(api_key=key).order_by("at", "id").values_list("status", flat=True)
    )
    assert statuses == [200] * 6 + [429] * 3
