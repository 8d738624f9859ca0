"""netops' own NetBox tools, registered in the tool catalog as the built-in source ``netbox``.

Read tools answer from live NetBox. Write tools never write: they plan, and return the diff
(``confirm=false``), or store it as a pending change request for an engineer to approve
(``confirm=true``). No tool can approve or apply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model
from django.urls import reverse

from netboxrw import reads, writes
from netboxrw.client import NetBoxClient
from netboxrw.config import netbox_client
from netboxrw.plans import Plan
from netboxrw.services import Requester, change_request_create
from netops.errors import ApplicationError, InvalidInput
from registry.catalog import BuiltinProvider, BuiltinTool, CallContext, register_provider

SOURCE = "netbox"
_READ = {"readOnlyHint": True, "idempotentHint": True, "openWorldHint": True}
_CONFIRM = {
    "type": "boolean",
    "default": False,
    "description": "false: only show the diff. true: submit it for review.",
}
_SITE = {"type": "string", "description": "Site slug or name (to tell same-named devices apart)."}


def strict_bool(value: Any, field: str) -> bool:
    """``value`` if it is a JSON boolean; anything else (``"false"``, 0, null) is a 400 naming ``field``.

    ``bool("false")`` is True: a string once queued a change request nobody meant to submit.
    """
    if isinstance(value, bool):
        return value
    raise InvalidInput(f"must be true or false (a JSON boolean), not {type(value).__name__}", field=field)


def _client() -> NetBoxClient:
    client = netbox_client()
    if client is None:
        raise ApplicationError("NetBox is not configured: set NETBOX_URL and NETBOX_TOKEN", 503)
    return client


def _schema(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def _read(
    name: str, description: str, properties: dict[str, Any], required: list[str], run: Callable[..., Any]
) -> BuiltinTool:
    async def handler(arguments: dict[str, Any], context: CallContext) -> Any:
        return await asyncio.to_thread(run, _client(), **arguments)

    return BuiltinTool(
        name,
        description,
        _schema(properties, required),
        handler,
        annotations=dict(_READ),
        permission="read_only",
    )


def _create_change(plan: Plan, arguments: dict[str, Any], context: CallContext) -> int:
    user = get_user_model().objects.filter(pk=context.user_id).first() if context.user_id else None
    requester = Requester(user=user, via=context.via or "tool call", conversation_id=context.conversation_id)
    return change_request_create(plan=plan, arguments=arguments, requester=requester).pk


def _write(
    name: str,
    description: str,
    properties: dict[str, Any],
    required: list[str],
    planner: Callable[[NetBoxClient, dict[str, Any]], Plan],
    *,
    destructive: bool,
) -> BuiltinTool:
    async def handler(arguments: dict[str, Any], context: CallContext) -> Any:
        arguments = dict(arguments)
        confirm = strict_bool(arguments.pop("confirm", False), "confirm")
        plan = await asyncio.to_thread(planner, _client(), arguments)
        if plan.is_noop:
            return {
                "status": "no_change",
                "summary": plan.summary,
                "message": "NetBox already matches; nothing to do.",
            }
        body = {"summary": plan.summary, "counts": plan.counts(), "diff": plan.diff()}
        if not confirm:
            return {
                "status": "dry_run",
                **body,
                "message": "Nothing was stored or written. Call again with confirm=true to submit it for review.",
            }
        change_id = await database_sync_to_async(_create_change)(plan, arguments, context)
        return {
            "status": "pending_approval",
            "change_request": change_id,
            "review_url": reverse("netboxrw:detail", args=[change_id]),
            **body,
            "message": "Submitted for review. Nothing is written until another engineer approves it in the queue.",
        }

    properties = {**properties, "confirm": _CONFIRM}
    annotations = {
        "readOnlyHint": False,
        "destructiveHint": destructive,
        "idempotentHint": True,
        "openWorldHint": True,
    }
    return BuiltinTool(
        name,
        description,
        _schema(properties, required),
        handler,
        annotations=annotations,
        permission="read_write",
    )


def _str(description: str) -> dict[str, Any]:
    return {"type": "string", "description": description}


def netbox_tools() -> list[BuiltinTool]:
    """The tools, or none when NetBox is not configured (the catalog then offers none)."""
    if netbox_client() is None:
        return []
    interface = {
        "type": "object",
        "properties": {"name": _str("Interface name"), "type": _str("NetBox interface type, e.g. 1000base-t, 10gbase-x-sfpp, virtual"),
                       "description": {"type": "string"}, "enabled": {"type": "boolean"}, "mtu": {"type": "integer"}},
        "required": ["name"],
    }  # fmt: skip
    return [
        _read("netbox_get_device", "Get one device by name (and site when names repeat): status, role, type, platform, site, primary IPs.",
              {"name": _str("Device name"), "site": _SITE}, ["name"], reads.get_device),
        _read("netbox_list_devices", "List devices. filters: site, role, status, platform, tag, manufacturer, tenant, region (slugs) and q (free text).",
              {"filters": {"type": "object", "description": "e.g. {\"site\": \"ams01\", \"role\": \"core-router\"}"},
               "limit": {"type": "integer", "default": 50, "maximum": 100}, "offset": {"type": "integer", "default": 0},
               "fields": {"type": "array", "items": {"type": "string"}}},
              [], lambda client, filters=None, limit=50, offset=0, fields=None: reads.list_devices(client, filters or {}, limit, offset, fields)),
        _read("netbox_find_ip", "Find an IP address (with or without mask) and what it is assigned to.",
              {"address": _str("e.g. 10.1.2.3 or 10.1.2.3/31")}, ["address"], reads.find_ip),
        _read("netbox_get_vlan_by_name", "Find VLANs by name, optionally at one site.",
              {"name": _str("VLAN name"), "site": _SITE}, ["name"], reads.get_vlan_by_name),
        _read("netbox_get_device_interfaces", "A device's interfaces with their IPs, VLAN and cable peer.",
              {"device_name": _str("Device name"), "site": _SITE}, ["device_name"], reads.get_device_interfaces),
        _read("netbox_get_prefixes_by_location", "Prefixes scoped to a region, site group or site (slug or name), with IP utilisation.",
              {"location": _str("Region, site group or site, by slug or name")}, ["location"], reads.prefixes_by_location),
        _read("netbox_search", "Search devices, sites, prefixes, IP addresses, VLANs and interfaces for a text.",
              {"query": _str("Text to search for"), "types": {"type": "array", "items": {"type": "string"}}, "limit": {"type": "integer", "default": 10}},
              ["query"], lambda client, query, types=None, limit=10: reads.search(client, query, types, limit)),
        _read("netbox_get_objects", "Generic read of any NetBox object type (e.g. dcim.devices, ipam.prefixes, circuits.circuits) with NetBox filters, field selection, brief mode, ordering and paging (limit at most 100).",
              {"object_type": _str("app.endpoint, e.g. dcim.interfaces"), "filters": {"type": "object"}, "fields": {"type": "array", "items": {"type": "string"}},
               "brief": {"type": "boolean", "default": False}, "ordering": {"type": "string"}, "limit": {"type": "integer", "default": 50}, "offset": {"type": "integer", "default": 0}},
              ["object_type"],
              lambda client, object_type, filters=None, fields=None, brief=False, ordering=None, limit=50, offset=0: reads.get_objects(client, object_type, filters or {}, fields, brief, ordering, limit, offset)),
        _write("netbox_create_device", "Create a device (optionally with interfaces, as one atomic change). Device type, role and site by slug or name.",
               {"name": _str("Device name"), "device_type": _str("Device type slug or model"), "role": _str("Device role slug or name"), "site": _str("Site slug or name"),
                "status": {"type": "string", "enum": list(writes.DEVICE_STATUSES), "default": "active"}, "platform": _str("Platform slug or name"),
                "serial": {"type": "string"}, "description": {"type": "string"}, "interfaces": {"type": "array", "items": interface}},
               ["name", "device_type", "role", "site"], writes.plan_create_device, destructive=False),
        _write("netbox_update_device_status", "Change a device's status.",
               {"device_name": _str("Device name"), "status": {"type": "string", "enum": list(writes.DEVICE_STATUSES)}, "site": _SITE},
               ["device_name", "status"], lambda client, args: writes.plan_update_device(client, args, tool="netbox_update_device_status"), destructive=True),
        _write("netbox_update_device", "Change other fields of a device (role, platform, serial, description, comments, tenant, ...).",
               {"device_name": _str("Device name"), "fields": {"type": "object", "description": "field -> new value; role/platform/site/tenant by slug or name"}, "site": _SITE},
               ["device_name", "fields"], writes.plan_update_device, destructive=True),
        _write("netbox_assign_ip_to_interface", "Assign an IP address to a device's interface (creating the address, or moving it).",
               {"device_name": _str("Device name"), "interface_name": _str("Interface name"), "ip_address": _str("Address with mask, e.g. 10.0.0.1/31"), "site": _SITE},
               ["device_name", "interface_name", "ip_address"], writes.plan_assign_ip, destructive=True),
        _write("netbox_ensure_vlan", "Make sure a VLAN exists (by VID, at a site or global).",
               {"vid": {"type": "integer", "minimum": 1, "maximum": 4094}, "name": _str("VLAN name"), "site": _SITE,
                "status": {"type": "string", "default": "active"}, "description": {"type": "string"}},
               ["vid", "name"], writes.plan_ensure_vlan, destructive=False),
        _write("netbox_ensure_prefix", "Make sure a prefix exists, scoped to a site and tied to a VLAN when given.",
               {"prefix": _str("e.g. 10.20.30.0/24"), "site": _SITE, "vlan_vid": {"type": "integer"}, "status": {"type": "string", "default": "active"}, "description": {"type": "string"}},
               ["prefix"], writes.plan_ensure_prefix, destructive=False),
        _write("netbox_delete_device", "Delete a device (its interfaces go with it).",
               {"device_name": _str("Device name"), "site": _SITE}, ["device_name"], writes.plan_delete_device, destructive=True),
        _write("netbox_apply_objects", "Bring a list of objects (types: site, device, interface, vlan, prefix, ip_address) to the given state in one change. Each: {type, data, ref?}; a data value {\"$ref\": ref} points at an earlier object of the list.",
               {"objects": {"type": "array", "items": {"type": "object", "properties": {"type": {"type": "string"}, "data": {"type": "object"}, "ref": {"type": "string"}}, "required": ["type", "data"]}}},
               ["objects"], writes.plan_apply_objects, destructive=True),
    ]  # fmt: skip


def register() -> None:
    register_provider(BuiltinProvider(source=SOURCE, tools=netbox_tools))
