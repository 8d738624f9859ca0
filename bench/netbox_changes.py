"""Planning and applying a 200-device change (10 interfaces each) against a real NetBox 4.7.

Prints, with baselines measured in the same run against the same NetBox:
- planning: wall time and the number of HTTP requests (bulk reads, never one per object), for a
  fresh change and again once everything exists (the idempotent re-plan);
- applying through the executor (drift check + bulk creates): objects per second, against NetBox's
  own bulk-create rate for the same objects posted directly (plain bulk POSTs of the same size).
Needs PostgreSQL, Redis and Python 3.12 (the test harness installs and starts NetBox).
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._setup import bulk_post_devices, django_on_scratch_db

DEVICES, INTERFACES = 200, 10


def main() -> None:
    django_on_scratch_db()
    import httpx

    from netboxrw.client import NetBoxClient, NetBoxConfig
    from netboxrw.executor import BULK, Executor
    from netboxrw.writes import plan_apply_objects
    from tests.support.netbox_server import start_netbox

    netbox = start_netbox()
    try:
        client = NetBoxClient(NetBoxConfig(url=netbox.url, token=netbox.token_v2, timeout=120))
        tag = uuid.uuid4().hex[:6]
        site = client.create("dcim/sites", {"name": f"Bench {tag}", "slug": f"bench-{tag}"})
        other = client.create("dcim/sites", {"name": f"Baseline {tag}", "slug": f"baseline-{tag}"})
        maker = client.create("dcim/manufacturers", {"name": f"Maker {tag}", "slug": f"maker-{tag}"})
        dtype = client.create(
            "dcim/device-types", {"manufacturer": maker["id"], "model": f"M-{tag}", "slug": f"m-{tag}"}
        )
        role = client.create(
            "dcim/device-roles", {"name": f"Leaf {tag}", "slug": f"leaf-{tag}", "color": "00ff00"}
        )

        objects = []
        for d in range(DEVICES):
            name = f"bench-{tag}-lea{1000 + d}"
            objects.append(
                {
                    "type": "device",
                    "ref": name,
                    "data": {
                        "name": name,
                        "site": site["id"],
                        "device_type": dtype["id"],
                        "role": role["id"],
                        "status": "active",
                    },
                }
            )
        for d in range(DEVICES):
            name = f"bench-{tag}-lea{1000 + d}"
            for i in range(INTERFACES):
                objects.append(
                    {
                        "type": "interface",
                        "data": {"device": {"$ref": name}, "name": f"et-0/0/{i}", "type": "10gbase-x-sfpp"},
                    }
                )
        total = len(objects)

        before = client.requests_made
        started = time.perf_counter()
        plan = plan_apply_objects(client, {"objects": objects})
        plan_seconds = time.perf_counter() - started
        plan_requests = client.requests_made - before
        assert len(plan.operations) == total, len(plan.operations)

        before = client.requests_made
        started = time.perf_counter()
        result = Executor(client, message="bench", log_context={"bench": True}).apply(plan)
        apply_seconds = time.perf_counter() - started
        apply_requests = client.requests_made - before
        assert result.outcome == "applied", result.message

        before = client.requests_made
        started = time.perf_counter()
        replan = plan_apply_objects(client, {"objects": objects})
        replan_seconds = time.perf_counter() - started
        replan_requests = client.requests_made - before
        assert replan.is_noop, replan.counts()

        # Baseline: the same objects at another site, posted directly in bulk, same batch size.
        http = httpx.Client(base_url=f"{netbox.url}/api/", headers=netbox.headers(), timeout=300)
        devices = [
            {
                "name": f"base-{tag}-lea{1000 + d}",
                "site": other["id"],
                "device_type": dtype["id"],
                "role": role["id"],
                "status": "active",
            }
            for d in range(DEVICES)
        ]
        baseline_seconds = bulk_post_devices(http, devices, INTERFACES, BULK)

        print(
            f"NetBox {netbox.version} on loopback (gunicorn, 2 workers), PostgreSQL 15; {DEVICES} devices x {INTERFACES} interfaces = {total} objects"
        )
        print(f"  plan (nothing exists yet):     {plan_seconds:6.2f} s, {plan_requests} HTTP requests")
        print(
            f"  re-plan (everything exists):   {replan_seconds:6.2f} s, {replan_requests} HTTP requests -> no_change"
        )
        print(
            f"  apply via executor:            {apply_seconds:6.2f} s, {apply_requests} HTTP requests, {total / apply_seconds:7.1f} objects/s"
        )
        print(
            f"  baseline, plain bulk POSTs:    {baseline_seconds:6.2f} s, {total / baseline_seconds:7.1f} objects/s"
        )
        print(f"  ratio executor / NetBox bulk:  {baseline_seconds / apply_seconds:.2f}  (target >= 0.8)")
    finally:
        netbox.stop()


if __name__ == "__main__":
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    main()
