"""Shared set-up for benchmarks: Django on a throwaway SQLite database (the embedded default)."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def django_on_scratch_db() -> Path:
    """Configure and set up Django on a fresh SQLite database in a temporary folder; migrate it."""
    scratch = Path(tempfile.mkdtemp(prefix="netops-bench-"))
    os.environ["NETOPS_VAR_DIR"] = str(scratch)
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "netops.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    sys.path.insert(0, str(ROOT))
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
    return scratch


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(samples: list[float]) -> str:
    return (
        f"median {statistics.median(samples):.3f} ms, p99 {percentile(samples, 0.99):.3f} ms, "
        f"min {min(samples):.3f} ms (n={len(samples)})"
    )


def bulk_post_devices(http: Any, devices: list[dict[str, Any]], interfaces: int, batch: int) -> float:
    """NetBox's own rate, the baselines' yardstick: ``devices`` posted in bulk, then ``interfaces``
    per device, ``batch`` objects per request, no reads; the wall time in seconds."""
    started = time.perf_counter()
    created: list[dict[str, Any]] = []
    for start in range(0, len(devices), batch):
        response = http.post("dcim/devices/", json=devices[start : start + batch])
        response.raise_for_status()
        created += response.json()
    rows = [
        {"device": dev["id"], "name": f"et-0/0/{i}", "type": "10gbase-x-sfpp"}
        for dev in created
        for i in range(interfaces)
    ]
    for start in range(0, len(rows), batch):
        http.post("dcim/interfaces/", json=rows[start : start + batch]).raise_for_status()
    return time.perf_counter() - started
