"""Queue depth and the oldest job's age on /readyz and /metrics."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from netboxrw.tasks import expire_change_requests

pytestmark = pytest.mark.django_db


def test_readyz_and_metrics_report_queue_depth_and_oldest_age() -> None:
    client = Client()
    assert client.get("/readyz").json()["checks"]["task_queue"]["detail"] == "0 queued, oldest 0.0 s"
    for _ in range(3):
        expire_change_requests.enqueue()
    DBTaskResult.objects.update(enqueued_at=timezone.now() - timedelta(seconds=90))
    ready = client.get("/readyz")
    assert ready.status_code == 200  # a backlog is reported, it does not make the process unready
    detail = ready.json()["checks"]["task_queue"]
    assert detail["required"] is False and detail["detail"].startswith("3 queued, oldest 9")
    metrics = client.get("/metrics").content.decode()
    assert "netops_task_queue_depth 3.0" in metrics
    oldest = next(
        line for line in metrics.splitlines() if line.startswith("netops_task_queue_oldest_seconds ")
    )
    assert 90 <= float(oldest.split()[1]) < 100
