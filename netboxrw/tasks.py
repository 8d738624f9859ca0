"""Background jobs of the change queue, run by ``manage.py worker``.

Approval only records the decision and enqueues :func:`apply_change_request` in the same
transaction (the queue is a table of the same database), so an approved change is never lost
between the two. The recovery job settles changes whose worker died mid-apply.
"""

from __future__ import annotations

from django_tasks import TaskContext, task

from netboxrw import services


def _worker_id(context: TaskContext) -> str:
    ids = context.task_result.worker_ids
    return str(ids[-1]) if ids else "worker"


@task(queue_name="changes", takes_context=True)
def apply_change_request(context: TaskContext, change_id: int) -> str:
    """Claim and apply one approved change request; its final state (or why it was not claimed)."""
    return services.change_request_apply(change_id=change_id, worker_id=_worker_id(context))


@task(takes_context=True)
def recover_change_requests(context: TaskContext) -> int:
    """Settle changes left applying by a dead worker (rolled back from their journal)."""
    return services.change_requests_recover(worker_id=_worker_id(context))


@task()
def expire_change_requests() -> int:
    """Expire pending requests older than ``CHANGE_REQUEST_TTL_HOURS``."""
    return services.change_requests_expire()
