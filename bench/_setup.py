"""Shared set-up for benchmarks: Django on a throwaway SQLite database (the embedded default)."""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

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
