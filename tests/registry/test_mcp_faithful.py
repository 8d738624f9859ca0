"""Issue 11, "faithful protocol": /mcp pages tools/list, passes outputSchema, structured content and
upstream progress through, refuses batches and malformed JSON as JSON-RPC errors; the gateway adds
the full content list and tells a tool's own isError (422) from a dead server (502).

In-process: the real ``MCPEndpoint`` ASGI app driven by the real Python ``mcp.Client`` (legacy and
auto modes) over httpx2's ASGI transport; upstream is the npm reference server
``@modelcontextprotocol/server-everything`` over stdio (registered and checked like any server).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import INVALID_PARAMS
from rest_framework.authtoken.models import Token

from registry.catalog import BuiltinProvider, BuiltinTool, CallContext, register_provider, unregister_provider
from registry.keys import api_key_create
from registry.mcp_endpoint import MCPEndpoint, transport_security
from registry.models import MCPServer
from registry.services import mcp_servers_check_health

pytestmark = pytest.mark.django_db(transaction=True)

MANY = 730


@pytest.fixture
def many_tools() -> Iterator[None]:
    async def handler(arguments: dict[str, Any], context: CallContext) -> dict[str, Any]:
        return {"echo": arguments.get("n")}

    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "additionalProperties": False}
    tools = [BuiltinTool(f"bulk_{i:04d}", f"Bulk tool {i}.", schema, handler) for i in range(MANY)]
    register_provider(BuiltinProvider(source="bulk", tools=lambda: tools))
    yield
    unregister_provider("bulk")


@asynccontextmanager
async def _client(key: str, mode: str) -> AsyncIterator[Client]:
    app = MCPEndpoint(transport_security(["testserver"], []))
    http = httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), headers={"Authorization": f"Bearer {key}"}, timeout=60
    )
    async with (
        http,
        Client(streamable_http_client("http://testserver/mcp", http_client=http), mode=mode) as c,
    ):
        yield c


async def _token(make_user: Callable[..., User]) -> str:
    alice = await database_sync_to_async(make_user)("alice")
    return (await Token.objects.acreate(user=alice)).key


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_tools_list_is_paged_with_opaque_cursors(
    make_user: Callable[..., User], many_tools: None, mode: str, settings: Any
) -> None:
    settings.MCP_TOOLS_PAGE_SIZE = 100
    key = await _token(make_user)
    async with _client(key, mode) as client:
        first = await client.list_tools()
        assert len(first.tools) == 100 and first.next_cursor
        names = [t.name for t in first.tools]
        cursor = first.next_cursor
        pages = 1
        while cursor:
            page = await client.list_tools(cursor=cursor)
            names += [t.name for t in page.tools]
            cursor = page.next_cursor
            pages += 1
        bulk = [n for n in names if n.startswith("bulk_")]
        assert bulk == [f"bulk_{i:04d}" for i in range(MANY)]
        assert len(names) == len(set(names)) and pages == -(-len(names) // 100)
        # A tool on a later page is still callable (the 2026 path resolves schemas across pages).
        result = await client.call_tool("bulk_0729", {"n": 7})
        assert result.is_error is False and result.structured_content == {"echo": 7}
        with pytest.raises(MCPError) as caught:
            await client.list_tools(cursor="not-a-cursor!")
        assert caught.value.code == INVALID_PARAMS


async def test_strict_arguments_on_mcp(make_user: Callable[..., User], many_tools: None) -> None:
    key = await _token(make_user)
    async with _client(key, "legacy") as client:
        unknown = await client.call_tool("bulk_0001", {"n": 1, "extra": True})
        wrong = await client.call_tool("bulk_0001", {"n": "1"})
    assert unknown.is_error is True and "extra" in unknown.content[0].text
    assert wrong.is_error is True and "n" in wrong.content[0].text


@pytest.mark.parametrize(
    ("body", "code"),
    [(b'[{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}]', -32600), (b"{nope", -32700), (b"42", -32600)],
    ids=["batch", "malformed", "not-an-object"],
)
async def test_batches_and_malformed_json_get_jsonrpc_errors(
    make_user: Callable[..., User], body: bytes, code: int
) -> None:
    key = await _token(make_user)
    app = MCPEndpoint(transport_security(["testserver"], []))
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app)) as http:
        response = await http.post(
            "http://testserver/mcp",
            content=body,
            headers={
                "Authorization": f"Bearer {key}",
                "Content-Type": "application/json",
                "Accept": "application/json, text/event-stream",
            },
        )
    assert response.status_code == 400
    answer = response.json()
    assert answer["jsonrpc"] == "2.0" and answer["id"] is None and answer["error"]["code"] == code
    assert "validation error" not in response.text.lower() and "pydantic" not in response.text.lower()


# --- the npm reference server ---------------------------------------------------------------------

NPX = shutil.which("npx")


def _everything() -> MCPServer:
    server = MCPServer.objects.create(
        name="everything",
        protocol="stdio",
        command=NPX or "npx",
        args=["-y", "@modelcontextprotocol/server-everything", "stdio"],
        health_check="",
        connect_timeout=60,
        call_timeout=60,
    )
    outcome = mcp_servers_check_health(servers=[server])[0]
    assert outcome.ok, outcome.error
    return server


@pytest.mark.skipif(NPX is None, reason="npx is not installed")
async def test_server_everything_through_mcp_progress_structured_output_schema_and_images(
    make_user: Callable[..., User],
) -> None:
    await database_sync_to_async(_everything)()
    key = await _token(make_user)
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    async with _client(key, "legacy") as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools["get-structured-content"].output_schema is not None
        long = await client.call_tool(
            "trigger-long-running-operation", {"duration": 1.5, "steps": 3}, progress_callback=on_progress
        )
        structured = await client.call_tool("get-structured-content", {"location": "New York"})
        image = await client.call_tool("get-tiny-image", {})
    assert long.is_error is False and "completed" in long.content[0].text
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert structured.is_error is False and isinstance(structured.structured_content, dict)
    assert "temperature" in structured.structured_content
    assert any(item.type == "image" for item in image.content)

    # The gateway: an image-only answer is no longer just {"data": ""}.
    owner = await database_sync_to_async(User.objects.create_user)("client")
    _, plain = await database_sync_to_async(api_key_create)(owner=owner, name="c", level="read_write")
    response = await AsyncClient().post(
        "/api/mcp/tools/get-tiny-image",
        data=b"{}",
        content_type="application/json",
        headers={"Authorization": f"Bearer {plain}"},
    )
    assert response.status_code == 200, response.content
    body = response.json()
    images = [c for c in body["content"] if c["type"] == "image"]
    assert images and images[0]["mimeType"] == "image/png" and len(images[0]["data"]) > 100
    assert json.loads(json.dumps(body))["success"] is True


@pytest.mark.parametrize("value", ["false", "true", 0, 1, None, [], {}])
async def test_netbox_write_tools_take_only_json_booleans_for_confirm(value: Any, settings: Any) -> None:
    """Inside the built-in tool too (not only the schema check): "false" used to queue a change.

    NetBox is configured at a closed port: the refusal comes before any request.
    """
    from netboxrw.tools import netbox_tools
    from netops.errors import InvalidInput

    settings.NETBOX_URL = "http://127.0.0.1:9"
    settings.NETBOX_TOKEN = "0123456789abcdef0123456789abcdef01234567"

    tool = {t.name: t for t in netbox_tools()}["netbox_update_device_status"]
    with pytest.raises(InvalidInput) as caught:
        await tool.handler({"name": "r1", "status": "offline", "confirm": value}, CallContext())
    assert caught.value.field == "confirm" and caught.value.status_code == 400
