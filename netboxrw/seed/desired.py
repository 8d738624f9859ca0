"""The demo network as the planner's desired objects, phase by phase (each phase depends on the ones before)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from netboxrw.planner import Desired, Ref
from netboxrw.seed.network import FUNCTIONS, KINDS, PLATFORMS, REGIONS, Network

TAG = "netops-demo"
TAG_REF = "tag:" + TAG
SHOWN = {"tags": [TAG]}  # in a review diff, the tag by name rather than its id
SITE_GROUPS = {"campus": "Campus", "branch": "Branch", "data-center": "Data center"}


def _tags() -> list[Ref]:
    return [Ref(TAG_REF)]


def _d(endpoint: str, key: dict[str, Any], data: dict[str, Any], ref: str, display: str) -> Desired:
    return Desired(endpoint, key, {**key, **data, "tags": _tags()}, ref=ref, display=display, shown=SHOWN)


def tag_phase(network: Network) -> list[Desired]:
    data = {"name": TAG, "color": "607d8b", "description": "Demo data owned by manage.py seed_netbox"}
    return [Desired("extras/tags", {"slug": TAG}, {"slug": TAG, **data}, ref=TAG_REF, display=f"tag {TAG}")]


def regions_phase(network: Network) -> list[Desired]:
    """Each region, then its countries as child regions (a parent must exist before its children)."""
    out: list[Desired] = []
    for region in network.regions:
        out.append(
            _d(
                "dcim/regions",
                {"slug": region.lower()},
                {"name": region, "description": REGIONS[region][0]},
                f"region:{region}",
                f"region {region}",
            )
        )
    for region in network.regions:
        for code, name in network.countries[region]:
            data = {"name": name, "parent": Ref(f"region:{region}")}
            out.append(_d("dcim/regions", {"slug": code.lower()}, data, f"region:{code}", f"region {name}"))
    return out


def catalog_phase(network: Network) -> list[Desired]:
    """What every region shares: site groups, manufacturers, roles, platforms, device types."""
    out: list[Desired] = []
    for slug, name in SITE_GROUPS.items():
        out.append(
            _d("dcim/site-groups", {"slug": slug}, {"name": name}, f"group:{slug}", f"site group {name}")
        )
    makers = sorted({f[3] for f in FUNCTIONS.values()})
    for maker in makers:
        out.append(
            _d("dcim/manufacturers", {"slug": maker.lower()}, {"name": maker}, f"maker:{maker}", maker)
        )
    for role, name, color, *_ in FUNCTIONS.values():
        out.append(
            _d(
                "dcim/device-roles",
                {"slug": role},
                {"name": name, "color": color},
                f"role:{role}",
                f"role {name}",
            )
        )
    for slug, (name, maker) in PLATFORMS.items():
        data = {"name": name, "manufacturer": Ref(f"maker:{maker}")}
        out.append(_d("dcim/platforms", {"slug": slug}, data, f"platform:{slug}", f"platform {name}"))
    for *_, maker, model, slug, _platform in FUNCTIONS.values():
        data = {"model": model, "manufacturer": Ref(f"maker:{maker}"), "u_height": 1}
        out.append(_d("dcim/device-types", {"slug": slug}, data, f"type:{slug}", f"{maker} {model}"))
    return out


def sites_phase(network: Network) -> list[Desired]:
    out = []
    for site in network.sites:
        data = {
            "name": site.code,
            "status": "active",
            "region": Ref(f"region:{site.country}"),
            "group": Ref(f"group:{site.group}"),
            "description": f"{site.country_name} {KINDS[site.kind][1].lower()}",
        }
        out.append(
            _d("dcim/sites", {"slug": site.code.lower()}, data, f"site:{site.code}", f"site {site.code}")
        )
    return out


def vlans_phase(network: Network) -> list[Desired]:
    out = []
    for vlan in network.vlans:
        key = {"vid": vlan.vid, "site": Ref(f"site:{vlan.site}")}
        data = {"name": vlan.name, "status": "active"}
        out.append(
            _d("ipam/vlans", key, data, f"vlan:{vlan.site}:{vlan.vid}", f"VLAN {vlan.vid} {vlan.site}")
        )
    return out


def devices_phase(network: Network) -> list[Desired]:
    out = []
    for device in network.devices:
        _role, _name, _color, _maker, _model, dtype, platform = FUNCTIONS[device.function]
        key = {"name": device.name, "site": Ref(f"site:{device.site}")}
        data = {
            "role": Ref(f"role:{_role}"),
            "device_type": Ref(f"type:{dtype}"),
            "platform": Ref(f"platform:{platform}"),
            "status": "active",
        }
        out.append(_d("dcim/devices", key, data, f"device:{device.name}", device.name))
    return out


def interfaces_phase(network: Network) -> list[Desired]:
    out = []
    for device in network.devices:
        for iface in device.interfaces:
            data: dict[str, Any] = {"type": iface.type, "mgmt_only": iface.mgmt_only}
            if iface.mode:
                data["mode"] = iface.mode
                data["tagged_vlans"] = [Ref(f"vlan:{device.site}:{vid}") for vid in iface.tagged_vlans]
                if iface.untagged_vlan is not None:
                    data["untagged_vlan"] = Ref(f"vlan:{device.site}:{iface.untagged_vlan}")
            key = {"device": Ref(f"device:{device.name}"), "name": iface.name}
            ref = f"interface:{device.name}:{iface.name}"
            out.append(_d("dcim/interfaces", key, data, ref, f"{device.name} {iface.name}"))
    return out


def _termination(device: str, name: str) -> list[dict[str, Any]]:
    return [{"object_type": "dcim.interface", "object_id": Ref(f"interface:{device}:{name}")}]


def cables_phase(network: Network) -> list[Desired]:
    out = []
    for link in network.links:
        data = {
            "a_terminations": _termination(*link.a),
            "b_terminations": _termination(*link.b),
            "status": "connected",
            "tags": _tags(),
        }
        key = {"a_interface": Ref(f"interface:{link.a[0]}:{link.a[1]}")}
        display = f"cable {link.a[0]} {link.a[1]} - {link.b[0]} {link.b[1]}"
        out.append(Desired("dcim/cables", key, data, display=display, shown=SHOWN, create_only=True))
    return out


def prefixes_phase(network: Network) -> list[Desired]:
    out = []
    for prefix, site, vid, description in network.prefixes:
        data: dict[str, Any] = {
            "scope_type": "dcim.site",
            "scope_id": Ref(f"site:{site}"),
            "status": "active",
            "description": description,
        }
        if vid is not None:
            data["vlan"] = Ref(f"vlan:{site}:{vid}")
        out.append(_d("ipam/prefixes", {"prefix": str(prefix)}, data, f"prefix:{prefix}", f"prefix {prefix}"))
    return out


def addresses_phase(network: Network) -> list[Desired]:
    out = []
    for device in network.devices:
        for iface in device.interfaces:
            if iface.address is None:
                continue
            data = {
                "status": "active",
                "assigned_object_type": "dcim.interface",
                "assigned_object_id": Ref(f"interface:{device.name}:{iface.name}"),
            }
            ref = f"ip:{iface.address}"
            out.append(
                _d(
                    "ipam/ip-addresses",
                    {"address": iface.address},
                    data,
                    ref,
                    f"{iface.address} {device.name} {iface.name}",
                )
            )
    return out


def primary_ips_phase(network: Network) -> list[Desired]:
    """Last: a device's primary IP must already be assigned to one of its interfaces."""
    return [
        Desired(
            "dcim/devices",
            {"name": device.name, "site": Ref(f"site:{device.site}")},
            {"primary_ip4": Ref(f"ip:{device.primary}")},
            ref=f"device:{device.name}",
            display=f"{device.name} primary IP",
        )
        for device in network.devices
        if device.primary
    ]


Phase = Callable[[Network], list[Desired]]
PHASES: list[tuple[str, Phase]] = [
    ("tag", tag_phase),
    ("catalog", catalog_phase),
    ("regions", regions_phase),
    ("sites", sites_phase),
    ("vlans", vlans_phase),
    ("devices", devices_phase),
    ("interfaces", interfaces_phase),
    ("cables", cables_phase),
    ("prefixes", prefixes_phase),
    ("ip-addresses", addresses_phase),
    ("primary-ips", primary_ips_phase),
]
# Phases every region needs: ``--via-queue`` puts them in a change request of their own.
SHARED_PHASES = ("tag", "catalog")
# Endpoints whose objects the seeder may find already in NetBox without its tag (a region "us", a
# manufacturer "cisco"): it uses them as they are, never changes them and never purges them.
# Any other object of the seeder found untagged is someone else's: the seeder refuses to touch it.
REUSABLE = (
    "dcim/regions",
    "dcim/site-groups",
    "dcim/manufacturers",
    "dcim/device-roles",
    "dcim/platforms",
    "dcim/device-types",
)
# What --purge deletes, in this order (dependents first); interfaces go with their devices.
PURGE_ORDER = [
    "dcim/cables",
    "ipam/ip-addresses",
    "ipam/prefixes",
    "dcim/devices",
    "ipam/vlans",
    "dcim/sites",
    "dcim/device-types",
    "dcim/platforms",
    "dcim/device-roles",
    "dcim/manufacturers",
    "dcim/site-groups",
    "dcim/regions",
]
