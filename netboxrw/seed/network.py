"""The demo network as plain data, built deterministically (same input, same objects, same order).

Regions NAM, ASPAC, EMEA and LATAM, each with its five most populous countries as child regions
(NAM: the North American continent, LATAM: South America). Per country two campuses and ten
branches, per region two data centers (in its first two countries). Site codes are the country's
ISO code, a kind letter (C campus, B branch, D data center) and two digits: ``USC01``, ``USB10``.
Devices are named ``<site code>-<function><number>`` (``wan cor acc spn lea``; leaves 1001-1999,
everything else 001-999).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network

from netboxrw.seed import addressing

REGIONS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "NAM": (
        "North America",
        (("US", "United States"), ("MX", "Mexico"), ("CA", "Canada"), ("GT", "Guatemala"), ("HT", "Haiti")),
    ),
    "ASPAC": (
        "Asia-Pacific",
        (("IN", "India"), ("CN", "China"), ("ID", "Indonesia"), ("PK", "Pakistan"), ("BD", "Bangladesh")),
    ),
    "EMEA": (
        "Europe, Middle East and Africa",
        (("NG", "Nigeria"), ("RU", "Russia"), ("ET", "Ethiopia"), ("EG", "Egypt"), ("CD", "DR Congo")),
    ),
    "LATAM": (
        "Latin America",
        (("BR", "Brazil"), ("CO", "Colombia"), ("AR", "Argentina"), ("PE", "Peru"), ("VE", "Venezuela")),
    ),
}
CAMPUSES, BRANCHES, DATA_CENTERS = 2, 10, 2  # per country, per country, per region
SPINES, LEAVES, ACCESS, USER_PORTS = 4, 20, 5, 8
USER_VLANS = ((100, "data"), (200, "voice"))
KINDS = {"campus": ("C", "Campus"), "branch": ("B", "Branch"), "dc": ("D", "Data center")}

# function -> (role slug, role name, colour, manufacturer, model, device-type slug, platform slug)
FUNCTIONS = {
    "wan": ("wan-router", "WAN router", "f44336", "Cisco", "ISR4451-X", "isr4451-x", "cisco-ios-xe"),
    "cor": ("core-router", "Core router", "9c27b0", "Juniper", "MX204", "mx204", "juniper-junos"),
    "acc": ("access-switch", "Access switch", "2196f3", "Cisco", "C9300-48P", "c9300-48p", "cisco-ios-xe"),
    "spn": ("spine", "Spine", "ff9800", "Arista", "DCS-7280CR3-32P4", "dcs-7280cr3-32p4", "arista-eos"),
    "lea": ("leaf", "Leaf", "4caf50", "Arista", "DCS-7050SX3-48YC8", "dcs-7050sx3-48yc8", "arista-eos"),
}
PLATFORMS = {
    "cisco-ios-xe": ("Cisco IOS XE", "Cisco"),
    "juniper-junos": ("Juniper Junos", "Juniper"),
    "arista-eos": ("Arista EOS", "Arista"),
}


@dataclass
class Site:
    code: str
    kind: str  # campus, branch, dc
    region: str
    country: str  # ISO code
    country_name: str
    index: int  # in its region: the address plan's site number

    @property
    def group(self) -> str:
        return {"campus": "campus", "branch": "branch", "dc": "data-center"}[self.kind]


@dataclass
class Vlan:
    site: str
    vid: int
    name: str
    prefix: IPv4Network


@dataclass
class Interface:
    name: str
    type: str
    mgmt_only: bool = False
    mode: str | None = None
    untagged_vlan: int | None = None  # VID at the device's site
    tagged_vlans: list[int] = field(default_factory=list)
    address: str | None = None  # with its mask


@dataclass
class Device:
    name: str
    site: str
    function: str
    interfaces: list[Interface] = field(default_factory=list)
    primary: str | None = None  # the management address

    def interface(self, name: str) -> Interface:
        return next(i for i in self.interfaces if i.name == name)


@dataclass
class Link:
    """A cable from ``a`` (device, interface) to ``b``; ``prefix`` is its /31 when it is routed."""

    a: tuple[str, str]
    b: tuple[str, str]
    prefix: IPv4Network | None = None


@dataclass
class Network:
    regions: list[str]
    countries: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)  # per region
    sites: list[Site] = field(default_factory=list)
    devices: list[Device] = field(default_factory=list)
    vlans: list[Vlan] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    prefixes: list[tuple[IPv4Network, str, int | None, str]] = field(default_factory=list)
    # (prefix, site code, VID or None, description)


def build(regions: list[str] | None = None, countries: int | None = None) -> Network:
    """The demo network for ``regions`` (all four when None), in dependency order.

    ``countries`` keeps only the first n countries of each region with their sites (data centers
    included: the first country holds one). Every object kept is the full network's object, same
    name and same addresses, so a quick demo and a later full seed agree.
    """
    chosen = [r for r in REGIONS if regions is None or r in regions]
    network = Network(regions=chosen, countries={r: REGIONS[r][1] for r in chosen})
    for region in chosen:
        _build_region(network, region)
    return network if countries is None else _subset(network, countries)


def _subset(network: Network, countries: int) -> Network:
    kept = {r: c[:countries] for r, c in network.countries.items()}
    codes = {code for chosen in kept.values() for code, _ in chosen}
    sites = [s for s in network.sites if s.country in codes]
    names = {s.code for s in sites}
    devices = [d for d in network.devices if d.site in names]
    on_site = {d.name for d in devices}
    return Network(
        regions=network.regions,
        countries=kept,
        sites=sites,
        devices=devices,
        vlans=[v for v in network.vlans if v.site in names],
        links=[link for link in network.links if link.a[0] in on_site],
        prefixes=[p for p in network.prefixes if p[1] in names],
    )


def _build_region(network: Network, region: str) -> None:
    countries = REGIONS[region][1]
    sites: list[Site] = []
    for code, name in countries:
        for kind, count in (("campus", CAMPUSES), ("branch", BRANCHES)):
            for n in range(1, count + 1):
                sites.append(Site(f"{code}{KINDS[kind][0]}{n:02d}", kind, region, code, name, len(sites)))
    for n in range(DATA_CENTERS):
        code, name = countries[n % len(countries)]
        sites.append(Site(f"{code}D{n + 1:02d}", "dc", region, code, name, len(sites)))
    network.sites += sites
    campus_index = dc_index = 0
    for site in sites:
        devices: list[Device] = []
        if site.kind == "campus":
            _campus(network, site, campus_index, devices)
            campus_index += 1
        elif site.kind == "branch":
            devices += [Device(f"{site.code}-wan{n:03d}", site.code, "wan") for n in (1, 2)]
        else:
            _data_center(network, site, dc_index, devices)
            dc_index += 1
        prefix = addressing.management_prefix(region, site.index)
        network.prefixes.append((prefix, site.code, None, f"{site.code} management"))
        for k, device in enumerate(devices):
            device.primary = addressing.management_address(region, site.index, k)
            device.interfaces.insert(
                0, Interface("mgmt0", "1000base-t", mgmt_only=True, address=device.primary)
            )
        network.devices += devices


def _link(
    network: Network, site: Site, number: int, up: tuple[Device, Interface], down: tuple[Device, Interface]
) -> None:
    """A routed link: the cable starts at the downstream end; the upstream end takes the even address."""
    prefix = addressing.link_prefix(site.region, site.index, number)
    up[1].address, down[1].address = addressing.ends(prefix)
    network.links.append(Link((down[0].name, down[1].name), (up[0].name, up[1].name), prefix))
    network.prefixes.append(
        (prefix, site.code, None, f"{down[0].name} {down[1].name} - {up[0].name} {up[1].name}")
    )


def _campus(network: Network, site: Site, campus_index: int, devices: list[Device]) -> None:
    wans = [Device(f"{site.code}-wan{n:03d}", site.code, "wan") for n in (1, 2)]
    core = Device(f"{site.code}-cor001", site.code, "cor")
    access = [Device(f"{site.code}-acc{n:03d}", site.code, "acc") for n in range(1, ACCESS + 1)]
    devices += [*wans, core, *access]
    vids = [vid for vid, _ in USER_VLANS]
    for w, wan in enumerate(wans):
        wan.interfaces.append(Interface("Gi0/0/1", "1000base-t"))
        core.interfaces.append(Interface(f"et-0/0/{w}", "10gbase-x-sfpp"))
        _link(network, site, w, (wan, wan.interfaces[-1]), (core, core.interfaces[-1]))
    for n, switch in enumerate(access):
        core.interfaces.append(Interface(f"xe-0/1/{n}", "10gbase-x-sfpp", mode="tagged", tagged_vlans=vids))
        switch.interfaces.append(Interface("Te1/1/1", "10gbase-x-sfpp", mode="tagged", tagged_vlans=vids))
        network.links.append(Link((switch.name, "Te1/1/1"), (core.name, f"xe-0/1/{n}")))
        for port in range(1, USER_PORTS + 1):
            switch.interfaces.append(
                Interface(
                    f"Gi1/0/{port}",
                    "1000base-t",
                    mode="tagged",
                    untagged_vlan=vids[0],
                    tagged_vlans=[vids[1]],
                )
            )
    for v, (vid, name) in enumerate(USER_VLANS):
        prefix = addressing.user_prefix(site.region, campus_index, v)
        network.vlans.append(Vlan(site.code, vid, f"{site.code}-{name}", prefix))
        core.interfaces.append(Interface(f"irb.{vid}", "virtual", address=addressing.gateway(prefix)))
        network.prefixes.append((prefix, site.code, vid, f"{site.code} {name}"))


def _data_center(network: Network, site: Site, dc_index: int, devices: list[Device]) -> None:
    spines = [Device(f"{site.code}-spn{n:03d}", site.code, "spn") for n in range(1, SPINES + 1)]
    leaves = [Device(f"{site.code}-lea{1000 + n}", site.code, "lea") for n in range(1, LEAVES + 1)]
    devices += [*spines, *leaves]
    for spine in spines:
        spine.interfaces += [Interface(f"Ethernet{n}", "100gbase-x-qsfp28") for n in range(1, LEAVES + 1)]
    for number, leaf in enumerate(leaves):
        for s, spine in enumerate(spines):
            leaf.interfaces.append(Interface(f"Ethernet{49 + s}", "100gbase-x-qsfp28"))
            _link(
                network,
                site,
                number * SPINES + s,
                (spine, spine.interfaces[number]),
                (leaf, leaf.interfaces[-1]),
            )
        vid = 1001 + number  # the leaf's number
        prefix = addressing.compute_prefix(site.region, dc_index, number)
        network.vlans.append(Vlan(site.code, vid, f"{leaf.name}-compute", prefix))
        leaf.interfaces.append(Interface(f"Vlan{vid}", "virtual", address=addressing.gateway(prefix)))
        network.prefixes.append((prefix, site.code, vid, f"{leaf.name} compute"))
