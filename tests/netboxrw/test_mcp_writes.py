"""Over netops' MCP endpoint a NetBox write tool yields a pending change request, never a write."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import Permission, User
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from rest_framework.authtoken.models import Token

from netboxrw.config import netbox_client
from netboxrw.models import ChangeRequest, ChangeState
from registry.mcp_endpoint import MCPEndpoint, transport_security
from tests.netboxrw.lab import make_lab
from tests.support.netbox_server import NetBoxInstance

pytestmark = pytest.mark.django_db(transaction=True)


async def test_write_tool_over_mcp_queues_a_change_for_the_token_user(
    netbox: NetBoxInstance, settings: Any
) -> None:
    settings.NETBOX_URL, settings.NETBOX_TOKEN = netbox.url, netbox.token_v2
    client = netbox_client()
    assert client is not None
    lab = await database_sync_to_async(make_lab)(client)
    alice = await database_sync_to_async(User.objects.create_user)("alice")
    # Under the token policy (README, issue 9) a token proposes changes only for a user who may.
    await database_sync_to_async(alice.user_permissions.add)(
        await Permission.objects.aget(content_type__app_label="netboxrw", codename="add_changerequest")
    )
    key = (await Token.objects.acreate(user=alice)).key
    http = httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=MCPEndpoint(transport_security(["testserver"], []))),
        headers={"Authorization": f"Token {key}"},
        timeout=60,
    )
    name = f"mcp-{lab.tag}-r1"
    arguments = {
        "name": name,
        "device_type": lab.device_type["slug"],
        "role": lab.role["slug"],
        "site": lab.site["slug"],
    }
    async with http, Client(streamable_http_client("http://testserver/mcp", http_client=http)) as mcp:
        tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
        assert tools["netbox_get_device"].annotations.read_only_hint is True
        assert tools["netbox_delete_device"].annotations.destructive_hint is True
        dry = await mcp.call_tool("netbox_create_device", arguments)
        queued = await mcp.call_tool("netbox_create_device", {**arguments, "confirm": True})
    assert dry.structured_content["status"] == "dry_run"
    assert queued.is_error is False
    assert queued.structured_content["status"] == "pending_approval"
    change = await ChangeRequest.objects.select_related("requested_by").aget(
        pk=queued.structured_content["change_request"]
    )
    assert change.state == ChangeState.PENDING
    assert change.requested_by == alice
    assert change.requested_via == "mcp client alice"
    found = await database_sync_to_async(client.fetch_all)("dcim/devices", {"name": name})
    assert found == []  # never a write
