"""Periodic jobs: apps register them here; every worker's scheduler enqueues the due ones.

The project registers, apps contribute (as :mod:`netops.health` does for readiness checks): an app
calls :func:`register_periodic` in its ``ready()`` with a task of its own and a function giving the
interval in seconds (from settings, so tests and operators can change it; 0 turns the job off).

Several workers may run at once on several machines. A job is enqueued by the worker whose
conditional ``UPDATE`` moves its due time forward — one statement, atomic on SQLite and
PostgreSQL alike — so each due run is enqueued exactly once however many schedulers are ticking.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from netops.models import ScheduledJob

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeriodicJob:
    """``task`` (a django-tasks task taking no arguments) every ``interval()`` seconds."""

    name: str
    task: Any
    interval: Callable[[], float]


_jobs: dict[str, PeriodicJob] = {}


def register_periodic(job: PeriodicJob) -> None:
    """Add (or replace) a periodic job."""
    _jobs[job.name] = job


def periodic_jobs() -> list[PeriodicJob]:
    return list(_jobs.values())


def enqueue_due(*, now: datetime | None = None) -> list[str]:
    """Enqueue every job that is due and that no other worker has claimed; their names."""
    now = now or timezone.now()
    enqueued = []
    for job in _jobs.values():
        seconds = job.interval()
        if seconds <= 0:
            continue
        with contextlib.suppress(IntegrityError):  # another worker created it at the same moment
            ScheduledJob.objects.get_or_create(name=job.name, defaults={"next_run_at": now})
        with transaction.atomic():
            claimed = ScheduledJob.objects.filter(name=job.name, next_run_at__lte=now).update(
                next_run_at=now + timedelta(seconds=seconds), last_enqueued_at=now
            )
            if claimed:
                job.task.enqueue()
                enqueued.append(job.name)
    if enqueued:
        logger.debug("periodic jobs enqueued", extra={"jobs": enqueued})
    return enqueued
