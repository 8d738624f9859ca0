"""Approving and applying through the worker, against a real NetBox 4.7, with same-run baselines.

Prints:
- approve -> response time for a 3,000-operation change (the web side only records and queues);
- the apply rate through ``manage.py worker`` (approve to applied, drift check and journal
  included) as a ratio to NetBox's own bulk-create rate for the same objects posted directly;
- recovery: a worker killed with SIGKILL after a random journal step, ten times; the time from the
  kill to the change settled (rolled back by a rescuing worker) and the objects left half-written.
Runs on the embedded SQLite default (workers share its file); needs PostgreSQL, Redis and Python
3.12 for the NetBox the test harness installs. ``BENCH_DEVICES`` sizes the change (300 x 10).
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._setup import ROOT, bulk_post_devices, django_on_scratch_db

DEVICES = int(os.environ.get("BENCH_DEVICES", "300"))
INTERFACES = 9  # one device + nine interfaces = ten operations per device
KILLS = int(os.environ.get("BENCH_KILLS", "10"))


def _worker(scratch: Path, netbox: Any, name: str, *extra: str, **env_extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        NETOPS_VAR_DIR=str(scratch),
        NETBOX_URL=netbox.url,
        NETBOX_TOKEN=netbox.token_v2,
        NETBOX_TIMEOUT="120",
        CHANGE_APPLY_LEASE_SECONDS="3",
        CHANGE_RECOVERY_INTERVAL="0.5",
        MCP_HEALTH_CHECK_INTERVAL="0",
        LOG_LEVEL="WARNING",
        **env_extra,
    )
    log = (scratch / f"worker-{name}.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "manage.py", "worker", "--worker-id", name, "--interval", "0.1", *extra],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _wait(predicate: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("gave up waiting")
        time.sleep(0.05)


def _objects(
    tag: str, site: int, dtype: int, role: int, devices: int, interfaces: int, *, interleave: bool = False
) -> list[dict[str, Any]]:
    """Devices, then their interfaces (bulk-friendly, as the baseline posts them); with ``interleave``
    each device is followed by its own interfaces, so a small plan has many journal steps."""
    device_objects, interface_objects = [], []
    for d in range(devices):
        name = f"{tag}-lea{1000 + d}"
        device_objects.append(
            {
                "type": "device",
                "ref": name,
                "data": {"name": name, "site": site, "device_type": dtype, "role": role, "status": "active"},
            }
        )
        interface_objects.append(
            [
                {
                    "type": "interface",
                    "data": {"device": {"$ref": name}, "name": f"et-0/0/{i}", "type": "10gbase-x-sfpp"},
                }
                for i in range(interfaces)
            ]
        )
    if interleave:
        return [
            obj
            for device, own in zip(device_objects, interface_objects, strict=True)
            for obj in (device, *own)
        ]
    return device_objects + [obj for own in interface_objects for obj in own]


def main() -> None:
    scratch = django_on_scratch_db()
    import httpx
    from django.contrib.auth.models import Permission, User
    from django.test import override_settings

    from netboxrw import services
    from netboxrw.client import NetBoxClient, NetBoxConfig
    from netboxrw.executor import BULK
    from netboxrw.models import ChangeJournalStep, ChangeRequest, ChangeState, JournalState
    from netboxrw.writes import plan_apply_objects
    from tests.support.netbox_server import start_netbox

    netbox = start_netbox()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        client = NetBoxClient(NetBoxConfig(url=netbox.url, token=netbox.token_v2, timeout=300))
        tag = uuid.uuid4().hex[:6]
        site = client.create("dcim/sites", {"name": f"Bench {tag}", "slug": f"bench-{tag}"})["id"]
        other = client.create("dcim/sites", {"name": f"Base {tag}", "slug": f"base-{tag}"})["id"]
        maker = client.create("dcim/manufacturers", {"name": f"Maker {tag}", "slug": f"maker-{tag}"})
        dtype = client.create(
            "dcim/device-types", {"manufacturer": maker["id"], "model": f"M-{tag}", "slug": f"m-{tag}"}
        )["id"]
        role = client.create(
            "dcim/device-roles", {"name": f"Leaf {tag}", "slug": f"leaf-{tag}", "color": "00ff00"}
        )["id"]
        alice = User.objects.create_user("alice")
        bob = User.objects.create_user("bob")
        bob.user_permissions.add(*Permission.objects.filter(content_type__app_label="netboxrw"))
        bob = User.objects.get(pk=bob.pk)
        requester = services.Requester(user=alice, via="bench")

        with override_settings(NETBOX_URL=netbox.url, NETBOX_TOKEN=netbox.token_v2, NETBOX_TIMEOUT=300):
            # --- one big change: approve latency, apply rate through a worker ---------------------
            plan = plan_apply_objects(
                client, {"objects": _objects(f"w{tag}", site, dtype, role, DEVICES, INTERFACES)}
            )
            total = len(plan.operations)
            change = services.change_request_create(plan=plan, arguments={}, requester=requester)
            started = time.perf_counter()
            services.change_request_approve(change_id=change.pk, reviewer=bob)
            approve_ms = (time.perf_counter() - started) * 1000
            workers.append(_worker(scratch, netbox, "bench"))
            _wait(lambda: ChangeRequest.objects.get(pk=change.pk).state != ChangeState.APPROVED, 60)
            applying_at = time.perf_counter()
            _wait(lambda: ChangeRequest.objects.get(pk=change.pk).state not in ("approved", "applying"), 1800)
            apply_seconds = time.perf_counter() - applying_at
            done = ChangeRequest.objects.get(pk=change.pk)
            assert done.state == ChangeState.APPLIED, done.error

            # Baseline: the same objects at another site, posted directly in bulk.
            http = httpx.Client(base_url=f"{netbox.url}/api/", headers=netbox.headers(), timeout=300)
            devices = [
                {
                    "name": f"b{tag}-lea{1000 + d}",
                    "site": other,
                    "device_type": dtype,
                    "role": role,
                    "status": "active",
                }
                for d in range(DEVICES)
            ]
            baseline_seconds = bulk_post_devices(http, devices, INTERFACES, BULK)
            for process in workers:
                process.terminate()
                process.wait(10)
            workers.clear()

            # --- recovery: kill a worker after a random step, let a rescuer settle the change ----
            rescuer = _worker(scratch, netbox, "rescuer", "--queue", "default")
            workers.append(rescuer)
            settle_times: list[float] = []
            left_over = 0
            rng = random.Random(42)
            for kill in range(KILLS):
                prefix = f"k{kill}{tag}"
                small = plan_apply_objects(
                    client, {"objects": _objects(prefix, site, dtype, role, 5, 3, interleave=True)}
                )
                steps = 10  # five devices, each followed by its three interfaces
                change = services.change_request_create(plan=small, arguments={}, requester=requester)
                services.change_request_approve(change_id=change.pk, reviewer=bob)
                pause = rng.randrange(0, steps - 1)
                doomed = _worker(
                    scratch,
                    netbox,
                    f"doomed{kill}",
                    "--queue",
                    "changes",
                    NETOPS_TEST_PAUSE_AFTER_STEP=str(pause),
                )
                _wait(
                    lambda c=change.pk, p=pause: ChangeJournalStep.objects.filter(
                        change_request_id=c, seq=p, state=JournalState.WRITTEN
                    ).exists(),
                    120,
                )
                os.kill(doomed.pid, signal.SIGKILL)
                doomed.wait(10)
                killed = time.perf_counter()
                _wait(lambda c=change.pk: ChangeRequest.objects.get(pk=c).state == ChangeState.FAILED, 120)
                settle_times.append(time.perf_counter() - killed)
                left_over += client.page("dcim/devices", {"name__isw": prefix}, limit=1).count
                # (interfaces cannot outlive their device in NetBox: counting devices counts both)

        print(f"NetBox {netbox.version} on loopback; SQLite (embedded default), one worker process")
        print(
            f"  approve -> response, {total:,}-operation change:  {approve_ms:7.1f} ms (target well under 1 s)"
        )
        print(f"  apply through the worker:   {apply_seconds:7.2f} s, {total / apply_seconds:6.1f} objects/s")
        print(
            f"  baseline, plain bulk POSTs: {baseline_seconds:7.2f} s, {total / baseline_seconds:6.1f} objects/s"
        )
        print(f"  ratio worker / NetBox bulk: {baseline_seconds / apply_seconds:.2f}  (target >= 0.9)")
        print(
            f"  recovery over {KILLS} kills at random steps: kill -> settled median {statistics.median(settle_times):.1f} s, "
            f"max {max(settle_times):.1f} s (lease 3 s); objects left half-written: {left_over} (must be 0)"
        )
    finally:
        for process in workers:
            if process.poll() is None:
                process.kill()
        netbox.stop()


if __name__ == "__main__":
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    main()
