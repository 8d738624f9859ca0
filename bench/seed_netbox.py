"""``manage.py seed_netbox`` against a real, empty NetBox 4.7, with a same-run baseline.

Prints, per phase, the seeder's progress lines, then:
- full seed (the given regions, all four by default): objects written, wall time, objects/s, and
  the ratio to NetBox's own bulk-create rate measured in the same run (plain bulk POSTs of 200
  devices with 10 interfaces each at another site, 500 per request: the executor's batch size);
- the re-run with nothing to change: wall time and HTTP requests (bulk reads only, no writes);
- purge: wall time.
Usage: ``python bench/seed_netbox.py [NAM,EMEA]``. Needs PostgreSQL, Redis and Python 3.12.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._setup import django_on_scratch_db


def baseline(url: str, headers: dict[str, str]) -> float:
    """NetBox's bulk-create rate (objects/s) for devices and interfaces posted directly."""
    import httpx

    http = httpx.Client(base_url=f"{url}/api/", headers=headers, timeout=600)
    site = http.post("dcim/sites/", json={"name": "Baseline", "slug": "baseline"}).json()
    maker = http.post("dcim/manufacturers/", json={"name": "Maker", "slug": "maker"}).json()
    dtype = http.post(
        "dcim/device-types/", json={"manufacturer": maker["id"], "model": "M", "slug": "m"}
    ).json()
    role = http.post("dcim/device-roles/", json={"name": "Base", "slug": "base", "color": "00ff00"}).json()
    started = time.perf_counter()
    devices = [
        {"name": f"base-{d}", "site": site["id"], "device_type": dtype["id"], "role": role["id"]}
        for d in range(200)
    ]
    created = []
    for start in range(0, len(devices), 500):
        response = http.post("dcim/devices/", json=devices[start : start + 500])
        response.raise_for_status()
        created += response.json()
    interfaces = [
        {"device": dev["id"], "name": f"et-0/0/{i}", "type": "10gbase-x-sfpp"}
        for dev in created
        for i in range(10)
    ]
    for start in range(0, len(interfaces), 500):
        http.post("dcim/interfaces/", json=interfaces[start : start + 500]).raise_for_status()
    seconds = time.perf_counter() - started
    return (len(devices) + len(interfaces)) / seconds


def main() -> None:
    django_on_scratch_db()
    from netboxrw.client import NetBoxClient, NetBoxConfig
    from netboxrw.seed.network import REGIONS, build
    from netboxrw.seed.reconcile import purge, seed, summary_table
    from tests.support.netbox_server import start_netbox

    regions = sys.argv[1].split(",") if len(sys.argv) > 1 else list(REGIONS)
    netbox = start_netbox()
    try:
        client = NetBoxClient(NetBoxConfig(url=netbox.url, token=netbox.token_v2, timeout=600))
        rate = baseline(netbox.url, netbox.headers())
        print(f"NetBox {netbox.version}, regions {','.join(regions)}", flush=True)
        print(f"  baseline bulk create:   {rate:7.1f} objects/s (200 devices + 2000 interfaces)", flush=True)
        first = seed(client, build(regions), out=sys.stdout)
        print(summary_table(first))
        seeded = first.written
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
