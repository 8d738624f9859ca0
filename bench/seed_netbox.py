"""``manage.py seed_netbox`` against a real, empty NetBox 4.7, with a same-run baseline.

The baseline is NetBox's own bulk-create rate for exactly the seeder's objects: the same payloads
(the desired state of ``netboxrw.seed``), POSTed straight to an empty NetBox in the same order and
the same 500-object bulk requests, primary IPs as bulk PATCHes, with no reads, no planning and no
drift checks. Each run gets its own fresh NetBox (a clone of the same migrated template), one after
the other, so the ratio measures the seeder's own overhead, not the object mix (a cable costs
NetBox far more than a VLAN).

Prints, per phase, the seeder's progress lines, then:
- baseline: objects posted, wall time, objects/s;
- full seed (the given regions, all four by default): objects written, wall time, objects/s,
  HTTP requests, and the ratio to the baseline;
- the re-run with nothing to change: wall time and HTTP requests (bulk reads only, no writes);
- purge: wall time.
Usage: ``python bench/seed_netbox.py [NAM,EMEA]``. Needs PostgreSQL, Redis and Python 3.12.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._setup import django_on_scratch_db

BULK = 500  # the executor's batch size


def baseline(url: str, headers: dict[str, str], regions: list[str]) -> tuple[int, float]:
    """Post the seeder's desired objects directly; return (objects written, seconds)."""
    import httpx

    from netboxrw.planner import Ref
    from netboxrw.seed.desired import PHASES
    from netboxrw.seed.network import build

    network = build(regions)
    http = httpx.Client(base_url=f"{url}/api/", headers=headers, timeout=600)
    ids: dict[str, int] = {}

    def bind(value: Any) -> Any:
        if isinstance(value, Ref):
            return ids[value.ref]
        if isinstance(value, list):
            return [bind(v) for v in value]
        if isinstance(value, dict):
            return {k: bind(v) for k, v in value.items()}
        return value

    def refs(value: Any) -> set[str]:
        if isinstance(value, Ref):
            return {value.ref}
        if isinstance(value, list | dict):
            return set().union(*(refs(v) for v in (value.values() if isinstance(value, dict) else value)))
        return set()

    written, started = 0, time.perf_counter()
    for name, phase in PHASES:
        desired = phase(network)
        if name == "primary-ips":
            items = [{"id": ids[d.ref or ""], **bind(d.data)} for d in desired]
            for start in range(0, len(items), BULK):
                http.patch("dcim/devices/", json=items[start : start + BULK]).raise_for_status()
            written += len(items)
            continue
        batch: list[Any] = []
        for item in [*desired, None]:
            # A batch ends at another endpoint, at 500 objects, or before an object that points at
            # one of the batch (a country at its region): ids are known once the POST returns.
            pending = {d.ref for d in batch if d.ref}
            if batch and (
                item is None
                or item.endpoint != batch[0].endpoint
                or len(batch) == BULK
                or refs(item.data) & pending
            ):
                response = http.post(f"{batch[0].endpoint}/", json=[bind(d.data) for d in batch])
                response.raise_for_status()
                for d, obj in zip(batch, response.json(), strict=True):
                    if d.ref:
                        ids[d.ref] = obj["id"]
                written += len(batch)
                batch = []
            if item is not None:
                batch.append(item)
    return written, time.perf_counter() - started


def main() -> None:
    django_on_scratch_db()
    from netboxrw.client import NetBoxClient, NetBoxConfig
    from netboxrw.seed.network import REGIONS, build
    from netboxrw.seed.reconcile import purge, seed, summary_table
    from tests.support.netbox_server import start_netbox

    regions = sys.argv[1].split(",") if len(sys.argv) > 1 else list(REGIONS)
    netbox = start_netbox()
    try:
        print(f"NetBox {netbox.version}, regions {','.join(regions)}", flush=True)
        posted, seconds = baseline(netbox.url, netbox.headers(), regions)
        rate = posted / seconds
        print(
            f"  baseline bulk create:   {seconds:7.1f} s, {posted} objects, {rate:7.1f} objects/s "
            "(the seeder's payloads posted directly)",
            flush=True,
        )
    finally:
        netbox.stop()

    netbox = start_netbox()
    try:
        client = NetBoxClient(NetBoxConfig(url=netbox.url, token=netbox.token_v2, timeout=60))
        first = seed(client, build(regions), out=sys.stdout)
        print(summary_table(first))
        seeded = first.written
        print(f"  baseline bulk create:   {seconds:7.1f} s, {posted} objects, {rate:7.1f} objects/s")
        print(
            f"  full seed:              {first.seconds:7.1f} s, {seeded} objects written, "
            f"{seeded / first.seconds:7.1f} objects/s, {first.requests} HTTP requests"
        )
        print(f"  ratio seed / baseline:  {seeded / first.seconds / rate:.2f}  (target >= 0.8)", flush=True)
        again = seed(client, build(regions), out=None)
        assert again.written == 0, again.counts
        print(
            f"  re-run (no change):     {again.seconds:7.1f} s, {again.requests} HTTP requests, 0 writes",
            flush=True,
        )
        gone = purge(client, out=None)
        print(f"  purge:                  {gone.seconds:7.1f} s, {gone.written} objects deleted")
    finally:
        netbox.stop()


if __name__ == "__main__":
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    main()
