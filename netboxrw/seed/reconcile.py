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
from netboxrw.executor import Executor, batches
from netboxrw.models import ChangeRequest
from netboxrw.planner import Desired, Planner
from netboxrw.plans import Operation, Plan
from netboxrw.seed.desired import PHASES, PURGE_ORDER, TAG
from netboxrw.seed.network import Network
from netboxrw.seed.network import build as build_network
from netboxrw.services import Requester, change_request_create

MESSAGE = "manage.py seed_netbox"
PURGE_PART = 500  # ids per bulk DELETE (regions: children first, in order, so in one request)


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
    planner = Planner(client)
    progress = Progress(out)
    for name, build in PHASES:
        desired = build(network)
        if dry_run and name == "primary-ips":
            desired = _known_devices(planner, desired, report)
        operations = planner.plan(desired)
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


def _count(report: Report, desired: list[Desired], operations: list[Operation]) -> None:
    changed: Counter[str] = Counter()
    for op in operations:
        report.add(op.endpoint, "created" if op.action == "create" else "updated")
        changed[op.endpoint] += 1
    for endpoint, total in Counter(d.endpoint for d in desired).items():
        report.add(endpoint, "unchanged", total - changed[endpoint])


def _apply(client: NetBoxClient, planner: Planner, name: str, plan: Plan, progress: Progress) -> None:
    """Apply batch after batch (one bulk request each), redrawing the progress line.

    Sequential on purpose: concurrent bulk writes of devices deadlock in NetBox (both update the
    device type's instance count) and gain little when NetBox is CPU-bound.
    """
    executor = Executor(client, message=MESSAGE, log_context={"seed_netbox": name}, bulk_updates=True)
    started, done, total = time.perf_counter(), 0, len(plan.operations)
    progress.show(name, 0, total, started)
    for batch in batches(plan.operations, bulk_updates=True):
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
        phase_started = time.perf_counter()
        for start in range(0, len(ids), PURGE_PART):
            client.bulk_delete(endpoint, ids[start : start + PURGE_PART], message=f"{MESSAGE} --purge")
            progress.show(endpoint.split("/")[1], min(start + PURGE_PART, len(ids)), len(ids), phase_started)
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


def summary_table(report: Report, columns: tuple[str, ...] = ("created", "updated", "unchanged")) -> str:
    rows = [f"{'object type':<20}" + "".join(f"{c:>11}" for c in columns)]
    for endpoint in sorted(report.counts):
        counts = report.counts[endpoint]
        rows.append(f"{endpoint:<20}" + "".join(f"{counts[c]:>11}" for c in columns))
    totals = [sum(report.counts[e][c] for e in report.counts) for c in columns]
    rows.append(f"{'total':<20}" + "".join(f"{t:>11}" for t in totals))
    rows.append(f"{report.seconds:.1f} s, {report.requests} HTTP requests")
    return "\n".join(rows)


def region_plan(client: NetBoxClient, network: Network) -> Plan:
    """Every phase of ``network`` as one plan (nothing written): what ``--via-queue`` stores for review.

    Primary IPs of devices the plan creates are updates of objects that do not exist yet: they point
    at the device by ``ref`` (the executor binds it when the plan is applied).
    """
    planner = Planner(client)
    operations: list[Operation] = []
    for name, build in PHASES:
        desired = build(network)
        if name == "primary-ips":
            for item in desired:
                if planner.ids.get(item.ref or "") is None:
                    operations.append(
                        Operation(
                            "update",
                            item.endpoint,
                            item.display,
                            data=planner.resolve(item.data),
                            ref=item.ref,
                        )
                    )
            desired = [d for d in desired if planner.ids.get(d.ref or "") is not None]
        operations += planner.plan(desired)
    return Plan("seed_netbox", f"seed_netbox: demo data for {', '.join(network.regions)}", operations)


def queue(client: NetBoxClient, regions: list[str]) -> list[tuple[str, ChangeRequest | None]]:
    """One pending change request per region (objects shared by regions go into each that needs them).

    Those shared objects (tag, catalog, parent regions) are in every request while they are missing:
    once one request is approved, the others conflict on them and must be queued again.
    """
    queued: list[tuple[str, ChangeRequest | None]] = []
    for region in regions:
        plan = region_plan(client, build_network([region]))
        if plan.is_noop:
            queued.append((region, None))
            continue
        change = change_request_create(
            plan=plan,
            arguments={"regions": [region]},
            requester=Requester(user=None, via="manage.py seed_netbox --via-queue"),
        )
        queued.append((region, change))
    return queued
