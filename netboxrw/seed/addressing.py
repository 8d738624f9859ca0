"""The demo address plan: deterministic, non-overlapping, all inside 172.16.0.0/12.

Region ``r`` (NAM 0, ASPAC 1, EMEA 2, LATAM 3) owns ``172.(16 + 4r).0.0/14``; with ``s`` the site's
index in its region (countries in order, each: campuses, then branches; the data centers last):
- ``172.(16+4r).s.0/24``   management of site ``s``; device ``k`` of the site has ``.(10 + k)``;
- ``172.(17+4r).s.0/24``   routed point-to-point links of site ``s``: link ``j`` is ``.2j/31``, the
  upstream end (spine, WAN router) takes the even address, the downstream end (leaf, core) the odd;
- ``172.(18+4r).(2c + v).0/24``  user VLANs of campus ``c`` (its index among the region's
  campuses): ``v`` 0 data (VLAN 100), 1 voice (VLAN 200); gateway ``.1`` on the core router;
- ``172.(19+4r).(20d + l).0/24`` compute VLAN of leaf ``l`` (0-19) in data center ``d`` (0-1);
  gateway ``.1`` on the leaf.
The test suite's own labs use 10.x.y.0/24, so the demo never collides with them.
"""

from __future__ import annotations

from ipaddress import IPv4Network

REGION_ORDER = ("NAM", "ASPAC", "EMEA", "LATAM")
SUPERNET = IPv4Network("172.16.0.0/12")


def _base(region: str) -> int:
    return 16 + 4 * REGION_ORDER.index(region)


def management_prefix(region: str, site_index: int) -> IPv4Network:
    return IPv4Network(f"172.{_base(region)}.{site_index}.0/24")


def management_address(region: str, site_index: int, device_index: int) -> str:
    return f"172.{_base(region)}.{site_index}.{10 + device_index}/24"


def link_prefix(region: str, site_index: int, link: int) -> IPv4Network:
    if not 0 <= link < 128:
        raise ValueError(f"site {site_index} has more than 128 routed links")
    return IPv4Network(f"172.{_base(region) + 1}.{site_index}.{2 * link}/31")


def user_prefix(region: str, campus_index: int, vlan_index: int) -> IPv4Network:
    return IPv4Network(f"172.{_base(region) + 2}.{2 * campus_index + vlan_index}.0/24")


def compute_prefix(region: str, dc_index: int, leaf_index: int) -> IPv4Network:
    return IPv4Network(f"172.{_base(region) + 3}.{20 * dc_index + leaf_index}.0/24")


def ends(prefix: IPv4Network) -> tuple[str, str]:
    """The two addresses of a /31, with its mask (upstream end first)."""
    low = prefix.network_address
    return f"{low}/31", f"{low + 1}/31"


def gateway(prefix: IPv4Network) -> str:
    return f"{prefix.network_address + 1}/{prefix.prefixlen}"
