"""How the background queue is doing: depth and the age of the oldest queued job.

Reported on ``/readyz`` (not required: a backlog is a warning, the web process still serves) and
on ``/metrics`` as ``netops_task_queue_depth`` and ``netops_task_queue_oldest_seconds``. A depth
that grows with an old oldest job means no worker is running (``manage.py worker``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from django.db import DatabaseError
from django.db.models import Count, Min
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from netops.health import ReadinessCheck, register_check
from netops.metrics import REGISTRY

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueueStats:
    depth: int
    oldest_seconds: float


def queue_stats() -> QueueStats:
    """Jobs waiting to run now (run-after in the future excluded) and how long the oldest has waited."""
    now = timezone.now()
    ready = DBTaskResult.objects.ready()
    aggregate = ready.aggregate(depth=Count("id"), oldest=Min("enqueued_at"))
    oldest = aggregate["oldest"]
    return QueueStats(
        depth=aggregate["depth"], oldest_seconds=(now - oldest).total_seconds() if oldest else 0.0
    )


def _readiness() -> str:
    stats = queue_stats()
    return f"{stats.depth} queued, oldest {stats.oldest_seconds:.1f} s"


class QueueCollector(Collector):
    """Queue depth and oldest age at scrape time (one aggregate query)."""

    def describe(self) -> Iterable[Metric]:
        yield GaugeMetricFamily("netops_task_queue_depth", "Background jobs waiting to run.")
        yield GaugeMetricFamily("netops_task_queue_oldest_seconds", "Age of the oldest waiting job.")

    def collect(self) -> Iterator[Metric]:
        try:
            stats = queue_stats()
        except DatabaseError:
            logger.warning("metrics: reading the task queue failed", exc_info=True)
            return
        yield GaugeMetricFamily(
            "netops_task_queue_depth", "Background jobs waiting to run.", value=stats.depth
        )
        yield GaugeMetricFamily(
            "netops_task_queue_oldest_seconds", "Age of the oldest waiting job.", value=stats.oldest_seconds
        )


def register() -> None:
    """Called once from the project's app config."""
    register_check(ReadinessCheck("task_queue", _readiness, required=False))
    REGISTRY.register(QueueCollector())
