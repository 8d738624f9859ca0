"""``manage.py seed_netbox`` against the real NetBox: one region seeded, checked, re-run, purged.

The seeder is deterministic (fixed names and addresses in 172.16.0.0/12, which no other test
uses), so this test purges before and after itself.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
from collections import defaultdict
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command

from netboxrw.client import NetBoxClient
from netboxrw.config import netbox_client
from netboxrw.models import ChangeRequest, ChangeState
from netboxrw.reads import prefixes_by_location
from netboxrw.seed.desired import PURGE_ORDER, TAG
from netboxrw.seed.network import build
from netboxrw.seed.reconcile import seed
from tests.netboxrw.lab import changelog_count
from tests.support.netbox_server import NetBoxInstance
from tests.support.tasks import approve_and_apply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(900)]

# One region: 5 countries x (2 campuses + 10 branches) + 2 data centers.
EXPECTED = {
    "dcim/regions": 1 + 5,
    "dcim/site-groups": 3,
    "dcim/sites": 5 * 12 + 2,
    "dcim/devices": 10 * 8 + 50 * 2 + 2 * (4 + 20),
    # campus: wan 2x2, core 1+2+5+2, access 5x(1+1+8); branch: 2 mgmt; dc: spine 4x21, leaf 20x6
    "dcim/interfaces": 10 * 64 + 50 * 2 + 2 * (84 + 120),
    "dcim/cables": 10 * (2 + 5) + 2 * 80,
    "ipam/vlans": 10 * 2 + 2 * 20,
    # management /24 per site, /31 per routed link, /24 per user VLAN and per leaf
    "ipam/prefixes": 62 + (10 * 2 + 2 * 80) + 10 * 2 + 2 * 20,
    # management per device, two per /31, one gateway per user/compute VLAN
    "ipam/ip-addresses": 228 + 2 * (10 * 2 + 2 * 80) + 10 * 2 + 2 * 20,
}
NAME = re.compile(r"^[A-Z0-9]{5}-(?:(?:wan|cor|acc|spn)(?:00[1-9]|0[1-9]\d|[1-9]\d\d)|lea1\d\d\d)$")


# --countries 1 of NAM: the United States with 2 campuses, 10 branches and data center USD01.
EXPECTED_US = {
    "dcim/regions": 2,
    "dcim/sites": 13,
    "dcim/devices": 2 * 8 + 10 * 2 + 24,
    "dcim/interfaces": 2 * 64 + 10 * 2 + 84 + 120,
    "dcim/cables": 2 * 7 + 80,
    "ipam/vlans": 2 * 2 + 20,
    "ipam/prefixes": 13 + (2 * 2 + 80) + 2 * 2 + 20,
    "ipam/ip-addresses": 60 + 2 * (2 * 2 + 80) + 2 * 2 + 20,
}
# The tag and what every region shares: 3 site groups, 3 manufacturers, 5 roles, 3 platforms, 5 types.
SHARED = 1 + 3 + 3 + 5 + 3 + 5


@pytest.fixture
def nb(netbox: NetBoxInstance, settings: Any) -> NetBoxClient:
    settings.NETBOX_URL = netbox.url
    settings.NETBOX_TOKEN = netbox.token_v2
    client = netbox_client()
    assert client is not None
    return client


@pytest.fixture
def reviewer() -> User:
    user = User.objects.create_user("reviewer", password="pw-for-tests-1")
    user.user_permissions.add(
        *Permission.objects.filter(
            content_type__app_label="netboxrw", codename__in=["view_changerequest", "approve_changerequest"]
        )
    )
    return User.objects.get(pk=user.pk)


def _run(*args: str) -> str:
    out = StringIO()
    call_command("seed_netbox", *args, stdout=out)
    return out.getvalue()


def _check_counts(nb: NetBoxClient, expected: dict[str, int]) -> None:
    assert {e: len(_tagged(nb, e)) for e in expected} == expected


def _totals(client: NetBoxClient) -> dict[str, int]:
    return {e: client.page(e, {}, limit=1).count for e in [*PURGE_ORDER, "dcim/interfaces", "extras/tags"]}


def _tagged(client: NetBoxClient, endpoint: str) -> list[dict[str, Any]]:
    return client.fetch_all(endpoint, {"tag": TAG})


def test_seed_one_region_rerun_and_purge(nb: NetBoxClient) -> None:
    call_command("seed_netbox", "--purge", stdout=StringIO())
    before = _totals(nb)

    changes = changelog_count(nb)
    out = StringIO()
    call_command("seed_netbox", "--regions", "NAM", "--dry-run", stdout=out)
    assert changelog_count(nb) == changes, "a dry run writes nothing"
    assert re.search(r"dcim/devices\s+228\s+228\s+0", out.getvalue()), out.getvalue()
    planned = {
        endpoint: int(match.group(1))
        for endpoint in EXPECTED
        if (match := re.search(rf"^{re.escape(endpoint)}\s+(\d+)\s", out.getvalue(), re.M))
    }
    assert planned == EXPECTED, out.getvalue()  # the whole region, every object planned for creation

    # The whole region is planned above (read-only, fast); one country of it is written: writing
    # the whole region (~2,700 objects, then purging them) took NetBox most of the suite's time.
    out = StringIO()
    call_command("seed_netbox", "--regions", "NAM", "--countries", "1", stdout=out)
    assert "dcim/cables" in out.getvalue()
    try:
        _check_counts(nb, EXPECTED_US)
        _check_seeded(nb, sites=EXPECTED_US["dcim/sites"], routed_links=2 * 2 + 80, user_prefixes=2 * 2)
        # Nothing changed: a second run plans and writes nothing.
        changes = changelog_count(nb)
        report = seed(nb, build(["NAM"], countries=1), out=None)
        assert report.written == 0, report.counts
        assert changelog_count(nb) == changes
        assert report.counts["dcim/devices"]["unchanged"] == 2 * 60  # devices, then their primary IPs
    finally:
        call_command("seed_netbox", "--purge", stdout=StringIO())
    assert _totals(nb) == before, "purge leaves NetBox as it was"


def _check_seeded(nb: NetBoxClient, *, sites: int, routed_links: int, user_prefixes: int) -> None:
    devices = _tagged(nb, "dcim/devices")
    assert all(NAME.match(d["name"]) for d in devices), [
        d["name"] for d in devices if not NAME.match(d["name"])
    ]
    assert all(d["primary_ip4"] for d in devices)
    site_rows = _tagged(nb, "dcim/sites")
    assert len({s["name"] for s in site_rows}) == sites and all(
        re.fullmatch(r"[A-Z0-9]{5}", s["name"]) for s in site_rows
    )

    interfaces = {i["id"]: i for i in _tagged(nb, "dcim/interfaces")}
    addresses = _tagged(nb, "ipam/ip-addresses")
    by_network: dict[ipaddress.IPv4Network, list[dict[str, Any]]] = defaultdict(list)
    for ip in addresses:
        by_network[ipaddress.IPv4Interface(ip["address"]).network].append(ip)
    prefixes = _tagged(nb, "ipam/prefixes")
    assert all(p["scope_type"] == "dcim.site" and p["scope_id"] for p in prefixes)
    p2p = [p for p in prefixes if p["prefix"].endswith("/31")]
    assert len(p2p) == routed_links
    for prefix in p2p:
        ips = by_network[ipaddress.IPv4Network(prefix["prefix"])]
        assert len(ips) == 2, prefix["prefix"]
        ends = [interfaces[ip["assigned_object_id"]] for ip in ips]
        assert all(ip["assigned_object_type"] == "dcim.interface" for ip in ips)
        assert ends[0]["cable"] and ends[0]["cable"]["id"] == (ends[1]["cable"] or {}).get("id"), prefix

    vlans = {v["id"]: v for v in _tagged(nb, "ipam/vlans")}
    user = [p for p in prefixes if p["vlan"] and vlans[p["vlan"]["id"]]["vid"] in (100, 200)]
    assert len(user) == user_prefixes and all(p["prefix"].endswith("/24") for p in user)
    for prefix in user:
        gateway = by_network[ipaddress.IPv4Network(prefix["prefix"])]
        assert [g["address"] for g in gateway] == [str(ipaddress.IPv4Network(prefix["prefix"])[1]) + "/24"]
        iface = interfaces[gateway[0]["assigned_object_id"]]
        assert iface["name"] == f"irb.{vlans[prefix['vlan']['id']]['vid']}"
        assert iface["device"]["name"].endswith("-cor001")

    answer = prefixes_by_location(nb, "USC01")
    assert answer["kind"] == "site" and answer["count"] == 5
    assert {p["prefix"] for p in answer["prefixes"]} >= {"172.18.0.0/24", "172.18.1.0/24", "172.16.0.0/24"}


def test_the_network_is_deterministic_named_by_the_standard_and_its_prefixes_do_not_overlap() -> None:
    network = build(None)
    assert build(None) == network
    codes = [s.code for s in network.sites]
    assert len(codes) == len(set(codes)) == 4 * 62 and all(re.fullmatch(r"[A-Z0-9]{5}", c) for c in codes)
    assert all(NAME.match(d.name) for d in network.devices)
    assert len({d.name for d in network.devices}) == len(network.devices) == 4 * 228
    prefixes = sorted((p for p, *_ in network.prefixes), key=lambda p: (p.network_address, p.prefixlen))
    assert all(not a.overlaps(b) for a, b in itertools.pairwise(prefixes))
    assert all(p.subnet_of(ipaddress.IPv4Network("172.16.0.0/12")) for p in prefixes)
    vids = defaultdict(list)
    for vlan in network.vlans:
        vids[vlan.site].append(vlan.vid)
    assert all(len(v) == len(set(v)) for v in vids.values())


def test_via_queue_shared_objects_first_then_one_reviewed_request_per_region(
    nb: NetBoxClient, reviewer: User
) -> None:
    _run("--purge")
    before, changes = _totals(nb), changelog_count(nb)

    out = _run("--regions", "NAM", "--countries", "1", "--via-queue")
    shared = ChangeRequest.objects.get(tool="seed_netbox")
    assert f"shared: change request #{shared.pk} ({SHARED} operations)" in out
    assert shared.state == ChangeState.PENDING and shared.arguments == {"part": "shared"}
    waiting = _run("--regions", "NAM", "--countries", "1", "--via-queue")
    assert f"#{shared.pk} (pending) holds the objects every region shares" in waiting
    assert ChangeRequest.objects.count() == 1 and changelog_count(nb) == changes, "queueing writes nothing"

    try:
        applied = approve_and_apply(change_id=shared.pk, reviewer=reviewer)
        assert applied.state == ChangeState.APPLIED, applied.error

        out = _run("--regions", "NAM", "--countries", "1", "--via-queue")
        region = ChangeRequest.objects.exclude(pk=shared.pk).get()
        operations = region.plan["operations"]
        # every object of the region created (none of the shared ones again), then 60 primary IPs
        assert len(operations) == sum(EXPECTED_US.values()) + 60, out
        assert f"NAM: change request #{region.pk}" in out
        assert not {op["endpoint"] for op in operations} & {"extras/tags", "dcim/manufacturers"}
        primary = [op for op in operations if op["action"] == "update"]  # of devices this request creates
        assert len(primary) == 60 and all(
            [(c["field"], c["after"]) for c in op["changes"]] == [("primary_ip4", f"ip:{_mgmt(op)} (new)")]
            for op in primary
        ), primary[0]
        assert f"already queued as change request #{region.pk}" in _run(
            "--regions", "NAM", "--countries", "1", "--via-queue"
        )

        applied = approve_and_apply(change_id=region.pk, reviewer=reviewer)
        assert applied.state == ChangeState.APPLIED, applied.error
        _check_counts(nb, EXPECTED_US)
        # The reviewed path and the direct path agree: a direct run finds nothing to do.
        assert seed(nb, build(["NAM"], countries=1), out=None).written == 0
        assert "NAM: nothing to change" in _run("--regions", "NAM", "--countries", "1", "--via-queue")
    finally:
        _run("--purge")
    assert _totals(nb) == before


def test_foreign_objects_are_refused_or_reused_and_an_interrupted_seed_resumes(nb: NetBoxClient) -> None:
    _run("--purge")
    site = nb.create("dcim/sites", {"name": "USC01", "slug": "usc01"})
    maker = nb.find_one("dcim/manufacturers", {"slug": "cisco"}) or nb.create(
        "dcim/manufacturers", {"name": "Cisco", "slug": "cisco", "description": "theirs"}
    )
    before, changes = _totals(nb), changelog_count(nb)
    try:
        with pytest.raises(CommandError, match=r"1 object\(s\).*site usc01.*never changes or purges"):
            _run("--regions", "NAM", "--countries", "1")
        assert changelog_count(nb) == changes, "refused before writing anything"
        nb.bulk_delete("dcim/sites", [site["id"]])

        # Interrupted as cabling starts (bulk writes are atomic: a run stops between them), then again.
        with pytest.raises(KeyboardInterrupt):
            seed(nb, build(["NAM"], countries=1), out=_InterruptAt("cables"))
        assert len(_tagged(nb, "dcim/interfaces")) == EXPECTED_US["dcim/interfaces"]
        assert not _tagged(nb, "dcim/cables") and not _tagged(nb, "ipam/prefixes")
        report = seed(nb, build(["NAM"], countries=1), out=None)
        assert report.counts["dcim/devices"]["created"] == 0 and report.counts["dcim/cables"]["created"] > 0
        _check_counts(nb, EXPECTED_US)
        # Their manufacturer is used as it is: not tagged, not changed, not purged.
        assert report.counts["dcim/manufacturers"]["reused"] == 1
        dry_run = _run("--regions", "NAM", "--countries", "1", "--dry-run")
        assert re.search(r"dcim/manufacturers\s+0\s+0\s+2\s+1\n", dry_run), dry_run
        _run("--purge")
        kept = nb.find_one("dcim/manufacturers", {"slug": "cisco"})
        assert kept is not None and kept["tags"] == [] and kept["description"] == maker["description"]
    finally:
        _run("--purge")
    assert _totals(nb) == {**before, "dcim/sites": before["dcim/sites"] - 1}


def _mgmt(op: dict[str, Any]) -> str:
    """The management address the seeder gives the device of ``op`` (its primary IP)."""
    name = op["display"].removesuffix(" primary IP")
    return next(str(d.primary) for d in build(["NAM"], countries=1).devices if d.name == name)


class _InterruptAt:
    """A progress writer that stops the run (as Ctrl-C would) when ``phase`` starts writing."""

    def __init__(self, phase: str) -> None:
        self.phase = phase

    def write(self, text: str, /) -> None:
        if text.startswith(f"\r{self.phase} "):
            raise KeyboardInterrupt

    def flush(self) -> None:
        pass
