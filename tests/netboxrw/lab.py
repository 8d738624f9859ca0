"""A small, uniquely named lab in the shared test NetBox (tests never see each other's objects)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import Permission, User

from netboxrw.client import NetBoxClient
from registry.catalog import CallContext, ToolCatalog


@dataclass
class Lab:
    tag: str
    site: dict[str, Any]
    region: dict[str, Any]
    device_type: dict[str, Any]
    role: dict[str, Any]
    platform: dict[str, Any]


def make_lab(client: NetBoxClient) -> Lab:
    tag = uuid.uuid4().hex[:8]
    region = client.create("dcim/regions", {"name": f"Region {tag}", "slug": f"region-{tag}"})
    site = client.create(
        "dcim/sites", {"name": f"AMS {tag}", "slug": f"ams-{tag}", "status": "active", "region": region["id"]}
    )
    manufacturer = client.create("dcim/manufacturers", {"name": f"Acme {tag}", "slug": f"acme-{tag}"})
    device_type = client.create(
        "dcim/device-types",
        {"manufacturer": manufacturer["id"], "model": f"AX-{tag}", "slug": f"ax-{tag}", "u_height": 1},
    )
    role = client.create(
        "dcim/device-roles", {"name": f"Core {tag}", "slug": f"core-{tag}", "color": "2196f3"}
    )
    platform = client.create("dcim/platforms", {"name": f"EOS {tag}", "slug": f"eos-{tag}"})
    return Lab(tag, site, region, device_type, role, platform)


def call_tool(
    name: str, arguments: dict[str, Any], user: User | None = None, conversation_id: str | None = None
) -> Any:
    """Call a catalog tool as ``user`` would through the chat; returns the structured result (or raises on error)."""

    async def run() -> Any:
        context = CallContext(user_id=user.pk if user else None, via="test", conversation_id=conversation_id)
        catalog = await ToolCatalog.aload(builtins=True, server_ids=[], context=context)
        return await catalog.call(name, arguments)

    result = asyncio.run(run())
    if result.is_error:
        raise AssertionError(f"{name} failed: {result.text()}")
    return result.structured_content


def call_tool_error(name: str, arguments: dict[str, Any]) -> str:
    async def run() -> Any:
        catalog = await ToolCatalog.aload(builtins=True, server_ids=[])
        return await catalog.call(name, arguments)

    result = asyncio.run(run())
    assert result.is_error, result.text()
    return result.text()


def changelog_count(client: NetBoxClient) -> int:
    return client.page("core/object-changes", {}, limit=1).count


def engineer(name: str, *, reviewer: bool = False) -> User:
    """A user who may see the queue (and approve, as a reviewer)."""
    user = User.objects.create_user(name, password="pw-for-tests-1")
    perms = ["view_changerequest"] + (["approve_changerequest"] if reviewer else [])
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="netboxrw", codename__in=perms)
    )
    return User.objects.get(pk=user.pk)


def device_change(lab: Lab, requester: User, name: str, conversation_id: str | None = None) -> int:
    """A pending request for a device with four interfaces (two journal steps); its id."""
    arguments = {
        "name": name,
        "device_type": lab.device_type["slug"],
        "role": lab.role["name"],
        "site": lab.site["slug"],
        "interfaces": [{"name": f"et-0/0/{i}", "type": "10gbase-x-sfpp"} for i in range(1, 5)],
        "confirm": True,
    }
    return int(call_tool("netbox_create_device", arguments, requester, conversation_id)["change_request"])


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` until it is true; its value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
