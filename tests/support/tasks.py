"""Running queued background tasks inside a test, as ``manage.py worker`` would (one by one)."""

from __future__ import annotations

from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult

from netboxrw import services
from netboxrw.models import ChangeRequest


def run_queued_tasks(worker_id: str = "test-worker") -> int:
    """Claim and run every ready task in this process (no connection closing: safe in a test
    transaction); returns how many ran. Failures are recorded on the task, as in a worker."""
    worker = Worker(
        queue_names=["*"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id=worker_id,
        excluded_queue_names=[],
    )
    ran = 0
    while (result := DBTaskResult.objects.ready().order_by("enqueued_at").first()) is not None:
        result.claim(worker_id)
        worker.run_task(result)
        ran += 1
    return ran


def approve_and_apply(*, change_id: int, reviewer: object, comment: str = "") -> ChangeRequest:
    """Approve as the reviewer (which queues the apply), then let a worker apply it."""
    services.change_request_approve(change_id=change_id, reviewer=reviewer, comment=comment)  # type: ignore[arg-type]
    run_queued_tasks()
    return ChangeRequest.objects.get(pk=change_id)
