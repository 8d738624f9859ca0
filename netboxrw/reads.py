"""The read tools' logic: small, LLM-sized answers from live NetBox (sync; tools run it in a thread)."""

from __future__ import annotations

import ipaddress
from typing import Any

from netboxrw.client import NetBoxClient, NetBoxError

MAX_LIMIT = 100
DEVICE_FIELDS = ["id", "name", "status", "role", "device_type", "platform", "site", "location", "rack", "serial",
                 "primary_ip4", "primary_ip6", "tenant", "description", "tags", "last_updated"]  # fmt: skip
SEARCH_TYPES = {
    "device": ("dcim/devices", ["id", "name", "status", "site", "role"]),
    "site": ("dcim/sites", ["id", "name", "slug", "status", "region", "group"]),
    "prefix": ("ipam/prefixes", ["id", "prefix", "status", "scope", "vlan", "description"]),
    "ip_address": ("ipam/ip-addresses", ["id", "address", "status", "assigned_object", "dns_name"]),
    "vlan": ("ipam/vlans", ["id", "vid", "name", "status", "site"]),
    "interface": ("dcim/interfaces", ["id", "name", "device", "type", "enabled"]),
}


def brief(value: Any) -> Any:
    """Nested NetBox objects reduced to what a reader needs (their name), recursively."""
    if isinstance(value, dict):
        if "label" in value and "value" in value:
            return value["value"]
        if "display" in value and "url" in value:
            return value.get("name") or value.get("display")
        return {k: brief(v) for k, v in value.items() if k not in ("url", "display_url")}
    if isinstance(value, list):
        return [brief(v) for v in value]
    return value


def flat(obj: dict[str, Any]) -> dict[str, Any]:
    """A top-level object with its nested objects reduced (the object itself keeps its fields)."""
    return {k: brief(v) for k, v in obj.items() if k not in ("url", "display_url")}


def resolve(
    client: NetBoxClient,
    endpoint: str,
    value: str | int,
    *,
    what: str,
    keys: tuple[str, ...] = ("slug", "name"),
) -> dict[str, Any]:
    """An object by id, slug or name; a clear error naming what was looked for."""
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        obj, _ = client.get(endpoint, int(value))
        return obj
    for key in keys:
        found = client.find_one(endpoint, {key: value})
        if found is not None:
            return found
    raise NetBoxError(f"no {what} {value!r} in NetBox (looked up by {' or '.join(keys)})", status=404)


def find_device(client: NetBoxClient, name: str, site: str | None = None) -> dict[str, Any]:
    filters: dict[str, Any] = {"name": name}
    if site:
        filters["site_id"] = resolve(client, "dcim/sites", site, what="site")["id"]
    page = client.page("dcim/devices", filters, limit=2)
    if page.count == 0:
        raise NetBoxError(f"no device named {name!r}" + (f" at site {site!r}" if site else ""), status=404)
    if page.count > 1:
        raise NetBoxError(f"{page.count} devices are named {name!r}; give the site", status=409)
    return page.results[0]


def get_device(client: NetBoxClient, name: str, site: str | None = None) -> dict[str, Any]:
    device = find_device(client, name, site)
    return {k: brief(device.get(k)) for k in DEVICE_FIELDS}


def list_devices(
    client: NetBoxClient, filters: dict[str, Any], limit: int, offset: int, fields: list[str] | None
) -> dict[str, Any]:
    query: dict[str, Any] = {}
    for name in ("site", "role", "platform", "tag", "status", "q", "manufacturer", "tenant", "region"):
        if filters.get(name) not in (None, ""):
            query[name] = filters[name]
    unknown = (
        set(filters)
        - set(query)
        - {"site", "role", "platform", "tag", "status", "q", "manufacturer", "tenant", "region"}
    )
    if unknown:
        raise NetBoxError(
            f"unknown filter(s) {sorted(unknown)}: use site, role, status, platform, tag, q", status=400
        )
    page = client.page("dcim/devices", query, limit=min(limit, MAX_LIMIT), offset=offset)
    chosen = fields or ["name", "status", "role", "device_type", "site", "platform", "primary_ip4"]
    return {"count": page.count, "results": [{k: brief(d.get(k)) for k in chosen} for d in page.results]}


def find_ip(client: NetBoxClient, address: str) -> dict[str, Any]:
    try:
        interface = ipaddress.ip_interface(address)
    except ValueError:
        raise NetBoxError(f"{address!r} is not an IP address", status=400) from None
    filters = {"address": str(interface)} if "/" in address else {"q": str(interface.ip)}
    page = client.page("ipam/ip-addresses", filters, limit=20)
    exact = [ip for ip in page.results if ip["address"].split("/")[0] == str(interface.ip)]
    results = []
    for ip in exact:
        row = flat(ip)
        assigned = ip.get("assigned_object") or {}
        if assigned:
            device = (assigned.get("device") or assigned.get("virtual_machine") or {}).get("name", "")
            row["assigned_to"] = f"{device} {assigned.get('name', '')}".strip()
        results.append(row)
    return {"count": len(results), "results": results}


def get_vlan_by_name(client: NetBoxClient, name: str, site: str | None = None) -> dict[str, Any]:
    filters: dict[str, Any] = {"name": name}
    if site:
        filters["site_id"] = resolve(client, "dcim/sites", site, what="site")["id"]
    page = client.page("ipam/vlans", filters, limit=20)
    return {"count": page.count, "results": [flat(v) for v in page.results]}


def get_device_interfaces(client: NetBoxClient, device_name: str, site: str | None = None) -> dict[str, Any]:
    device = find_device(client, device_name, site)
    interfaces = client.fetch_all("dcim/interfaces", {"device_id": device["id"]})
    ips = client.fetch_all("ipam/ip-addresses", {"device_id": device["id"]}) if interfaces else []
    by_interface: dict[int, list[str]] = {}
    for ip in ips:
        if ip.get("assigned_object_type") == "dcim.interface":
            by_interface.setdefault(ip["assigned_object_id"], []).append(ip["address"])
    return {
        "device": device["name"],
        "count": len(interfaces),
        "interfaces": [
            {
                "name": i["name"],
                "type": brief(i.get("type")),
                "enabled": i.get("enabled"),
                "description": i.get("description", ""),
                "mode": brief(i.get("mode")),
                "untagged_vlan": brief(i.get("untagged_vlan")),
                "ip_addresses": by_interface.get(i["id"], []),
                "connected_to": brief(i.get("link_peers")) if i.get("link_peers") else None,
            }
            for i in interfaces
        ],
    }


def prefixes_by_location(client: NetBoxClient, location: str) -> dict[str, Any]:
    """Prefixes scoped to a region, site group or site (by slug or name), with utilisation."""
    for endpoint, kind, filter_name in (
        ("dcim/sites", "site", "site_id"),
        ("dcim/site-groups", "site group", "site_group_id"),
        ("dcim/regions", "region", "region_id"),
    ):
        for key in ("slug", "name"):
            found = client.find_one(endpoint, {key: location})
            if found is not None:
                prefixes = client.fetch_all("ipam/prefixes", {filter_name: found["id"]})
                return {
                    "location": found["name"],
                    "kind": kind,
                    "count": len(prefixes),
                    "prefixes": _with_utilisation(client, prefixes),
                }
    raise NetBoxError(f"no region, site group or site {location!r} in NetBox", status=404)


def _with_utilisation(client: NetBoxClient, prefixes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    used: dict[str, int] = {p["prefix"]: 0 for p in prefixes}
    networks = {p["prefix"]: ipaddress.ip_network(p["prefix"]) for p in prefixes}
    for start in range(0, len(prefixes), 50):  # IPs of many prefixes per request
        parents = [p["prefix"] for p in prefixes[start : start + 50]]
        for ip in client.fetch_all("ipam/ip-addresses", {"parent": parents}, fields=["address"]):
            address = ipaddress.ip_interface(ip["address"]).ip
            for prefix in parents:
                if address in networks[prefix]:
                    used[prefix] += 1
    rows = []
    for p in prefixes:
        network = networks[p["prefix"]]
        size = (
            network.num_addresses
            if network.prefixlen >= network.max_prefixlen - 1
            else network.num_addresses - 2
        )
        rows.append(
            {
                "prefix": p["prefix"],
                "status": brief(p.get("status")),
                "scope": brief(p.get("scope")),
                "vlan": brief(p.get("vlan")),
                "role": brief(p.get("role")),
                "description": p.get("description", ""),
                "used_ips": used[p["prefix"]],
                "utilisation_percent": round(100 * used[p["prefix"]] / max(size, 1), 1),
            }
        )
    return rows


def search(client: NetBoxClient, query: str, types: list[str] | None, limit: int) -> dict[str, Any]:
    chosen = types or list(SEARCH_TYPES)
    unknown = set(chosen) - set(SEARCH_TYPES)
    if unknown:
        raise NetBoxError(f"unknown type(s) {sorted(unknown)}; use {sorted(SEARCH_TYPES)}", status=400)
    results = {}
    for kind in chosen:
        endpoint, fields = SEARCH_TYPES[kind]
        page = client.page(endpoint, {"q": query}, limit=min(limit, 25))
        results[kind] = {
            "count": page.count,
            "results": [{f: brief(o.get(f)) for f in fields} for o in page.results],
        }
    return results


def get_objects(
    client: NetBoxClient,
    object_type: str,
    filters: dict[str, Any],
    fields: list[str] | None,
    brief_mode: bool,
    ordering: str | None,
    limit: int,
    offset: int,
) -> dict[str, Any]:
    endpoint = object_type.replace(".", "/").strip("/")
    page = client.page(
        endpoint,
        filters,
        fields=fields,
        brief=brief_mode,
        ordering=ordering,
        limit=min(limit, MAX_LIMIT),
        offset=offset,
    )
    return {
        "count": page.count,
        "limit": min(limit, MAX_LIMIT),
        "offset": offset,
        "results": [flat(o) for o in page.results],
    }
