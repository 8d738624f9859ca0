"""Seeding and purging: each phase planned by :class:`Planner` and applied by :class:`Executor`.

A phase is planned with bulk reads and only its missing or different objects are written (bulk
POSTs of consecutive creates); phases run in dependency order, each applied before the next is
planned, so references are real ids. A second run plans nothing; an interrupted run resumes.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

from netboxrw.client import NetBoxClient, NetBoxError
from netboxrw.executor import BatchSizer, Executor
from netboxrw.models import ChangeRequest, ChangeState
from netboxrw.planner import Desired, Planner
from netboxrw.plans import Operation, Plan, pending_update_op
from netboxrw.seed.addressing import SUPERNET
from netboxrw.seed.desired import PHASES, PURGE_ORDER, REUSABLE, SHARED_PHASES, TAG, TAG_REF, Phase
from netboxrw.seed.network import Network
from netboxrw.seed.network import build as build_network
from netboxrw.services import Requester, change_request_create

MESSAGE = "manage.py seed_netbox"
SHOWN = 5  # foreign objects named in a refusal


@dataclass
class Report:
    """Per object type: created / updated / unchanged (or deleted when purging); requests; time."""

    counts: dict[str, Counter[str]] = field(default_factory=dict)
    requests: int = 0
    seconds: float = 0.0
    plans: list[Plan] = field(default_factory=list)

    def add(self, endpoint: str, action: str, n: int = 1) -> None:
        self.counts.setdefault(endpoint, Counter())[action] += n

    @property
    def written(self) -> int:
        return sum(c["created"] + c["updated"] + c["deleted"] for c in self.counts.values())


class SeedRefused(Exception):
    """NetBox holds objects the seeder would have to change but did not create: nothing is touched."""


class Writer(Protocol):
    def write(self, text: str, /) -> Any: ...
    def flush(self) -> Any: ...


class Progress:
    """One line per phase, redrawn in place: a bar, done/total, objects per second."""

    def __init__(self, out: Writer | None) -> None:
        self.out = out

    def show(self, phase: str, done: int, total: int, started: float, final: bool = False) -> None:
        if self.out is None:
            return
        rate = done / max(time.perf_counter() - started, 1e-6)
        filled = int(24 * done / total) if total else 24
        line = f"\r{phase:<13} [{'#' * filled}{'.' * (24 - filled)}] {done:>6}/{total:<6} {rate:7.1f}/s"
        self.out.write(line + ("\n" if final else ""))
        self.out.flush()


def seed(
    client: NetBoxClient, network: Network, *, dry_run: bool = False, out: Writer | None = sys.stdout
) -> Report:
    """Make NetBox hold ``network``; with ``dry_run`` only plan (the plans are in the report)."""
    report = Report()
    before, started = client.requests_made, time.perf_counter()
    _refuse_foreign(client, network)
    planner = Planner(client)
    progress = Progress(out)
    for name, build in PHASES:
        desired = build(network)
        if dry_run and name == "primary-ips":
            desired = _known_devices(planner, desired, report)
        operations = _owned(planner, planner.plan(desired), report)
        _count(report, desired, operations)
        plan = Plan("seed_netbox", f"seed_netbox: {name}", operations)
        report.plans.append(plan)
        if not dry_run:
            _apply(client, planner, name, plan, progress)
    report.requests = client.requests_made - before
    report.seconds = time.perf_counter() - started
    return report


def _known_devices(planner: Planner, desired: list[Desired], report: Report) -> list[Desired]:
    """Dry run on a fresh NetBox: devices the plan would create get their primary IP later (an update)."""
    known = [d for d in desired if planner.ids.get(d.ref or "") is not None]
    report.add("dcim/devices", "updated", len(desired) - len(known))
    return known


def _refuse_foreign(client: NetBoxClient, network: Network) -> None:
    """Refuse before writing anything when a site, prefix or address of the plan exists untagged.

    Those are the likely collisions in a NetBox in use (172.16.0.0/12 is common private space);
    the seeder would otherwise take them over and ``--purge`` would later delete them. Three kinds
    of bulk read: untagged sites by slug, untagged prefixes and addresses inside the demo supernet.
    """
    untagged = {"tag__n": TAG} if client.find_one("extras/tags", {"slug": TAG}) is not None else {}
    found: list[str] = []
    slugs = sorted(site.code.lower() for site in network.sites)
    for start in range(0, len(slugs), 100):
        filters = {"slug": slugs[start : start + 100], **untagged}
        found += [f"site {o['slug']}" for o in client.fetch_all("dcim/sites", filters, fields=["slug"])]
    ours = {str(prefix) for prefix, *_ in network.prefixes}
    filters = {"within_include": str(SUPERNET), **untagged}
    found += [
        f"prefix {o['prefix']}"
        for o in client.fetch_all("ipam/prefixes", filters, fields=["prefix"])
        if o["prefix"] in ours
    ]
    addresses = {i.address for d in network.devices for i in d.interfaces if i.address}
    filters = {"parent": str(SUPERNET), **untagged}
    found += [
        f"IP address {o['address']}"
        for o in client.fetch_all("ipam/ip-addresses", filters, fields=["address"])
        if o["address"] in addresses
    ]
    if found:
        raise SeedRefused(_foreign_message(found))


def _owned(planner: Planner, operations: list[Operation], report: Report) -> list[Operation]:
    """``operations`` without changes to objects that exist without the seeder's tag.

    Shared kinds (regions, site groups, manufacturers, roles, platforms, device types) found
    untagged are used as they are (counted as ``reused``); any other untagged object refuses the run.
    """
    tag_id = planner.ids.get(TAG_REF)
    kept: list[Operation] = []
    foreign: list[str] = []
    for op in operations:
        tags = (op.before or {}).get("tags", [])
        if op.action == "update" and "tags" in op.data and (tag_id is None or tag_id not in tags):
            if op.endpoint in REUSABLE:
                report.add(op.endpoint, "reused")
            else:
                foreign.append(f"{op.display} ({op.endpoint} #{op.id})")
            continue
        kept.append(op)
    if foreign:
        raise SeedRefused(_foreign_message(foreign))
    return kept


def _foreign_message(found: list[str]) -> str:
    more = f" and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    return (
        f"NetBox already holds {len(found)} object(s) of the demo network that the seeder did not "
        f"create (no {TAG} tag): {', '.join(found[:SHOWN])}{more}. The seeder never changes or purges "
        "objects it does not own: rename or delete them, or seed another NetBox."
    )


def _count(report: Report, desired: list[Desired], operations: list[Operation]) -> None:
    changed: Counter[str] = Counter()
    for op in operations:
        report.add(op.endpoint, "created" if op.action == "create" else "updated")
        changed[op.endpoint] += 1
    for endpoint, total in Counter(d.endpoint for d in desired).items():
        reused = report.counts.get(endpoint, Counter())["reused"]
        report.add(endpoint, "unchanged", total - changed[endpoint] - reused)


def _apply(client: NetBoxClient, planner: Planner, name: str, plan: Plan, progress: Progress) -> None:
    """Apply batch after batch (one bulk request each), redrawing the progress line.

    Sequential on purpose: concurrent bulk writes of devices deadlock in NetBox (both update the
    device type's instance count) and gain little when NetBox is CPU-bound.
    """
    executor = Executor(client, message=MESSAGE, log_context={"seed_netbox": name}, bulk_updates=True)
    started, done, total = time.perf_counter(), 0, len(plan.operations)
    progress.show(name, 0, total, started)
    for batch in BatchSizer().batches(plan.operations, bulk_updates=True):
        result = executor.apply(Plan(plan.tool, plan.summary, batch))
        if result.outcome != "applied":
            raise NetBoxError(f"seed_netbox {name}: {result.message} {result.conflicts[:3]}", status=None)
        done += len(batch)
        progress.show(name, done, total, started)
    progress.show(name, done, total, started, final=True)
    planner.ids.update(executor.ids)


def purge(client: NetBoxClient, *, dry_run: bool = False, out: Writer | None = sys.stdout) -> Report:
    """Delete every object tagged ``netops-demo`` (dependents first, in bulk), then the tag."""
    report = Report()
    before, started = client.requests_made, time.perf_counter()
    progress = Progress(out)
    sizer = BatchSizer()  # bulk DELETEs of devices take seconds each: sized by measured cost
    if client.find_one("extras/tags", {"slug": TAG}) is None:
        return report
    for endpoint in PURGE_ORDER:
        objects = client.fetch_all(endpoint, {"tag": TAG}, fields=["id", "parent"])
        ids = _children_first(objects) if endpoint == "dcim/regions" else [o["id"] for o in objects]
        report.add(endpoint, "deleted", len(ids))
        if endpoint == "dcim/devices":  # their interfaces go with them
            report.add(
                "dcim/interfaces", "deleted", client.page("dcim/interfaces", {"tag": TAG}, limit=1).count
            )
        if dry_run or not ids:
            continue
        phase_started, done = time.perf_counter(), 0
        while done < len(ids):
            # Regions in one request: children first, so no parent is deleted before its children.
            part = ids[done:] if endpoint == "dcim/regions" else ids[done : done + sizer.size(endpoint)]
            part_started = time.perf_counter()
            client.bulk_delete(endpoint, part, message=f"{MESSAGE} --purge")
            sizer.observe(endpoint, len(part), time.perf_counter() - part_started)
            done += len(part)
            progress.show(endpoint.split("/")[1], done, len(ids), phase_started)
        progress.show(endpoint.split("/")[1], len(ids), len(ids), phase_started, final=True)
    tag = client.find_one("extras/tags", {"slug": TAG})
    if tag is not None and not dry_run:
        client.bulk_delete("extras/tags", [tag["id"]], message=f"{MESSAGE} --purge")
    report.add("extras/tags", "deleted")
    report.requests = client.requests_made - before
    report.seconds = time.perf_counter() - started
    return report


def _children_first(regions: list[dict[str, Any]]) -> list[int]:
    return [r["id"] for r in regions if r.get("parent")] + [r["id"] for r in regions if not r.get("parent")]


def summary_table(
    report: Report, columns: tuple[str, ...] = ("created", "updated", "unchanged", "reused")
) -> str:
    rows = [f"{'object type':<20}" + "".join(f"{c:>11}" for c in columns)]
    for endpoint in sorted(report.counts):
        counts = report.counts[endpoint]
        rows.append(f"{endpoint:<20}" + "".join(f"{counts[c]:>11}" for c in columns))
    totals = [sum(report.counts[e][c] for e in report.counts) for c in columns]
    rows.append(f"{'total':<20}" + "".join(f"{t:>11}" for t in totals))
    rows.append(f"{report.seconds:.1f} s, {report.requests} HTTP requests")
    return "\n".join(rows)


OPEN_STATES = (ChangeState.PENDING, ChangeState.APPROVED, ChangeState.APPLYING)
QUEUED_VIA = "manage.py seed_netbox --via-queue"


@dataclass
class Queued:
    """What ``--via-queue`` did for one part (``shared`` or a region), in words."""

    part: str
    message: str


def queue(client: NetBoxClient, regions: list[str], countries: int | None = None) -> list[Queued]:
    """Queue the seed as change requests for review: the shared objects first, then one per region.

    Every region uses the same tag, site groups, manufacturers, roles, platforms and device types.
    Put into each region's request, they would be created by the first approval and make every
    other request conflict. So while any is missing (or differs) they form one request of their
    own, and the regions are queued by the next run, after that request is applied; the regions
    then refer to them by id. A part whose request is still open is not queued again.
    """
    open_requests = {
        str(change.arguments.get("part", "")): change
        for change in ChangeRequest.objects.filter(tool="seed_netbox", state__in=OPEN_STATES)
    }
    if "shared" in open_requests:
        return [_waiting(open_requests["shared"])]
    network = build_network(regions, countries)
    _refuse_foreign(client, network)
    planner = Planner(client)
    report = Report()
    shared = [
        op for name, build in PHASES if name in SHARED_PHASES for op in _plan(planner, build, network, report)
    ]
    if shared:
        plan = Plan(
            "seed_netbox", "seed_netbox: demo data shared by every region (tag, site groups, catalog)", shared
        )
        change = _create(plan, "shared")
        return [
            Queued(
                "shared",
                f"change request #{change.pk} ({len(shared)} operations): approve it, then run "
                "--via-queue again to queue the regions",
            )
        ]
    queued: list[Queued] = []
    for region in network.regions:
        if region in open_requests:
            change = open_requests[region]
            queued.append(Queued(region, f"already queued as change request #{change.pk} ({change.state})"))
            continue
        region_network = build_network([region], countries)
        plan = region_plan(client, region_network)
        if plan.is_noop:
            queued.append(Queued(region, "nothing to change"))
            continue
        change = _create(plan, region, region_network)
        queued.append(Queued(region, f"change request #{change.pk} ({len(plan.operations)} operations)"))
    return queued


def region_plan(client: NetBoxClient, network: Network) -> Plan:
    """Every phase of ``network`` as one plan (nothing written): what ``--via-queue`` stores for review.

    Primary IPs of devices the plan creates are updates of objects that do not exist yet: they point
    at the device by ``ref`` (the executor binds it when the plan is applied).
    """
    planner = Planner(client)
    report = Report()
    operations: list[Operation] = []
    for name, build in PHASES:
        if name != "primary-ips":
            operations += _plan(planner, build, network, report)
            continue
        desired = build(network)
        operations += [
            pending_update_op(item.endpoint, item.display, planner.resolve(item.data), ref=item.ref or "")
            for item in desired
            if planner.ids.get(item.ref or "") is None
        ]
        known = [d for d in desired if planner.ids.get(d.ref or "") is not None]
        operations += _owned(planner, planner.plan(known), report)
    return Plan("seed_netbox", f"seed_netbox: demo data for {', '.join(network.regions)}", operations)


def _plan(planner: Planner, build: Phase, network: Network, report: Report) -> list[Operation]:
    return _owned(planner, planner.plan(build(network)), report)


def _waiting(change: ChangeRequest) -> Queued:
    return Queued(
        "shared",
        f"change request #{change.pk} ({change.state}) holds the objects every region shares: "
        "once it is applied, run --via-queue again to queue the regions",
    )


def _create(plan: Plan, part: str, network: Network | None = None) -> ChangeRequest:
    arguments: dict[str, Any] = {"part": part}
    if network is not None:
        arguments["countries"] = [code for code, _ in network.countries[part]]
    return change_request_create(
        plan=plan, arguments=arguments, requester=Requester(user=None, via=QUEUED_VIA)
    )
