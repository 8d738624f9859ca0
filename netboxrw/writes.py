"""The write tools' planners: arguments -> desired objects -> a :class:`~netboxrw.plans.Plan`.

Planners only read. Device types, roles, sites and platforms are resolved by slug or name first so
the plan holds ids and the diff shows names. Idempotent by construction: a desired state that
already holds plans no operations.
"""

from __future__ import annotations

from typing import Any

from netboxrw.client import NetBoxClient, NetBoxError
from netboxrw.planner import Desired, Planner, Ref
from netboxrw.plans import Plan, delete_op, update_op
from netboxrw.reads import find_device, resolve

DEVICE_STATUSES = ("offline", "active", "planned", "staged", "failed", "inventory", "decommissioning")
SUPPORTED_TYPES = {
    "site": ("dcim/sites", ("slug",)),
    "device": ("dcim/devices", ("name", "site")),
    "interface": ("dcim/interfaces", ("device", "name")),
    "vlan": ("ipam/vlans", ("vid", "site")),
    "prefix": ("ipam/prefixes", ("prefix",)),
    "ip_address": ("ipam/ip-addresses", ("address",)),
}


def _status(value: str) -> str:
    if value not in DEVICE_STATUSES:
        raise NetBoxError(f"status {value!r} is not one of {', '.join(DEVICE_STATUSES)}", status=400)
    return value


def plan_create_device(client: NetBoxClient, args: dict[str, Any]) -> Plan:
    site = resolve(client, "dcim/sites", args["site"], what="site")
    device_type = resolve(
        client, "dcim/device-types", args["device_type"], what="device type", keys=("slug", "model")
    )
    role = resolve(client, "dcim/device-roles", args["role"], what="device role")
    data: dict[str, Any] = {
        "name": args["name"],
        "site": site["id"],
        "device_type": device_type["id"],
        "role": role["id"],
        "status": _status(args.get("status") or "active"),
    }
    shown = {
        "site": site["name"],
        "device_type": device_type.get("display", device_type.get("model")),
        "role": role["name"],
    }
    if args.get("platform"):
        platform = resolve(client, "dcim/platforms", args["platform"], what="platform")
        data["platform"], shown["platform"] = platform["id"], platform["name"]
    for name in ("serial", "description"):
        if args.get(name):
            data[name] = args[name]
    desired = [
        Desired(
            "dcim/devices",
            {"name": args["name"], "site": site["id"]},
            data,
            ref="device",
            display=args["name"],
            shown=shown,
        )
    ]
    for interface in args.get("interfaces") or []:
        values = {
            "device": Ref("device"),
            "name": interface["name"],
            "type": interface.get("type", "1000base-t"),
        }
        for name in ("description", "enabled", "mtu", "mgmt_only"):
            if name in interface:
                values[name] = interface[name]
        desired.append(
            Desired("dcim/interfaces", {"device": Ref("device"), "name": interface["name"]}, values,
                    display=f"{args['name']} {interface['name']}", shown={"device": args["name"]})
        )  # fmt: skip
    operations = Planner(client).plan(desired)
    count = len(args.get("interfaces") or [])
    summary = f"Create device {args['name']} at {site['name']}" + (
        f" with {count} interfaces" if count else ""
    )
    return Plan("netbox_create_device", summary, operations)


def plan_update_device(
    client: NetBoxClient, args: dict[str, Any], *, tool: str = "netbox_update_device"
) -> Plan:
    device = find_device(client, args["device_name"], args.get("site"))
    fields = dict(args.get("fields") or {})
    if "status" in args:
        fields["status"] = args["status"]
    if not fields:
        raise NetBoxError("nothing to change: give the fields to update", status=400)
    desired: dict[str, Any] = {}
    shown: dict[str, Any] = {}
    lookups = {"role": ("dcim/device-roles", "device role"), "platform": ("dcim/platforms", "platform"),
               "site": ("dcim/sites", "site"), "tenant": ("tenancy/tenants", "tenant")}  # fmt: skip
    for name, value in fields.items():
        if name == "status":
            desired[name] = _status(value)
        elif name in lookups and value not in (None, ""):
            obj = resolve(client, lookups[name][0], value, what=lookups[name][1])
            desired[name], shown[name] = obj["id"], obj["name"]
        else:
            desired[name] = value
    client.check_fields("dcim/devices", desired)
    op = update_op("dcim/devices", device, desired, device["name"], shown=shown)
    summary = f"Update device {device['name']}: " + ", ".join(
        f"{k} → {shown.get(k, v)}" for k, v in desired.items()
    )
    return Plan(tool, summary, [op] if op else [])


def plan_delete_device(client: NetBoxClient, args: dict[str, Any]) -> Plan:
    device = find_device(client, args["device_name"], args.get("site"))
    op = delete_op(
        "dcim/devices", device, device["name"], ["name", "site", "role", "device_type", "status", "serial"]
    )
    return Plan("netbox_delete_device", f"Delete device {device['name']} (and its interfaces)", [op])


def plan_assign_ip(client: NetBoxClient, args: dict[str, Any]) -> Plan:
    device = find_device(client, args["device_name"], args.get("site"))
    interface = client.find_one(
        "dcim/interfaces", {"device_id": device["id"], "name": args["interface_name"]}
    )
    if interface is None:
        raise NetBoxError(f"{device['name']} has no interface {args['interface_name']!r}", status=404)
    address = args["ip_address"] if "/" in args["ip_address"] else f"{args['ip_address']}/32"
    data = {"address": address, "assigned_object_type": "dcim.interface", "assigned_object_id": interface["id"],
            "status": args.get("status") or "active"}  # fmt: skip
    shown = {"assigned_object_id": f"{device['name']} {interface['name']}"}
    operations = Planner(client).plan(
        [Desired("ipam/ip-addresses", {"address": address}, data, display=address, shown=shown)]
    )
    return Plan(
        "netbox_assign_ip_to_interface",
        f"Assign {address} to {device['name']} {interface['name']}",
        operations,
    )


def plan_ensure_vlan(client: NetBoxClient, args: dict[str, Any]) -> Plan:
    data: dict[str, Any] = {
        "vid": int(args["vid"]),
        "name": args["name"],
        "status": args.get("status") or "active",
    }
    key: dict[str, Any] = {"vid": int(args["vid"])}
    shown: dict[str, Any] = {}
    if args.get("site"):
        site = resolve(client, "dcim/sites", args["site"], what="site")
        data["site"] = key["site"] = site["id"]
        shown["site"] = site["name"]
    if args.get("description"):
        data["description"] = args["description"]
    operations = Planner(client).plan(
        [Desired("ipam/vlans", key, data, display=f"VLAN {args['vid']} {args['name']}", shown=shown)]
    )
    where = f" at {shown['site']}" if shown else ""
    return Plan("netbox_ensure_vlan", f"Ensure VLAN {args['vid']} ({args['name']}){where}", operations)


def plan_ensure_prefix(client: NetBoxClient, args: dict[str, Any]) -> Plan:
    data: dict[str, Any] = {"prefix": args["prefix"], "status": args.get("status") or "active"}
    shown: dict[str, Any] = {}
    if args.get("site"):
        site = resolve(client, "dcim/sites", args["site"], what="site")
        data.update(scope_type="dcim.site", scope_id=site["id"])
        shown["scope_id"] = site["name"]
    if args.get("vlan_vid") is not None:
        filters: dict[str, Any] = {"vid": args["vlan_vid"]}
        if args.get("site"):
            filters["site_id"] = data["scope_id"]
        vlan = client.find_one("ipam/vlans", filters)
        if vlan is None:
            raise NetBoxError(
                f"no VLAN {args['vlan_vid']}" + (f" at {args['site']}" if args.get("site") else ""),
                status=404,
            )
        data["vlan"], shown["vlan"] = vlan["id"], f"{vlan['vid']} {vlan['name']}"
    if args.get("description"):
        data["description"] = args["description"]
    operations = Planner(client).plan(
        [Desired("ipam/prefixes", {"prefix": args["prefix"]}, data, display=args["prefix"], shown=shown)]
    )
    return Plan("netbox_ensure_prefix", f"Ensure prefix {args['prefix']}", operations)


def plan_apply_objects(client: NetBoxClient, args: dict[str, Any]) -> Plan:
    """Generic: ``objects`` = [{"type", "data", "ref"?}] in dependency order; ``{"$ref": r}`` links them."""
    desired = []
    for index, spec in enumerate(args["objects"]):
        kind = spec.get("type")
        if kind not in SUPPORTED_TYPES:
            raise NetBoxError(
                f"objects[{index}].type {kind!r} is not one of {', '.join(SUPPORTED_TYPES)}", status=400
            )
        endpoint, key_fields = SUPPORTED_TYPES[kind]
        data = {
            k: Ref(v["$ref"]) if isinstance(v, dict) and "$ref" in v else v
            for k, v in (spec.get("data") or {}).items()
        }
        missing = [f for f in key_fields if f not in data and not (kind == "vlan" and f == "site")]
        if missing:
            raise NetBoxError(f"objects[{index}] ({kind}) needs {', '.join(missing)}", status=400)
        client.check_fields(endpoint, {k: v for k, v in data.items()})
        key = {f: data[f] for f in key_fields if f in data}
        display = " ".join(str(v) for v in key.values() if not isinstance(v, Ref))
        desired.append(Desired(endpoint, key, data, ref=spec.get("ref"), display=f"{kind} {display}"))
    try:
        operations = Planner(client).plan(desired)
    except ValueError as exc:
        raise NetBoxError(str(exc), status=400) from None
    return Plan("netbox_apply_objects", f"Apply {len(desired)} objects", operations)
