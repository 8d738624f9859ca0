"""Change requests: create from a plan, approve (and apply), reject, expire, revert.

Transitions form one graph (:data:`TRANSITIONS`), enforced here under a row lock, so two approvals
racing for the same request apply it once. Every transition appends a :class:`ChangeEvent`; queue
pages and the requesting conversation are told after commit.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, models, transaction
from django.utils import timezone
from django_guid import get_guid

from netboxrw.client import NetBoxError
from netboxrw.config import netbox_client
from netboxrw.executor import Executor
from netboxrw.models import ChangeEvent, ChangeRequest, ChangeState
from netboxrw.plans import Plan, create_op, update_op
from netops.errors import ApplicationError, ConflictError

logger = logging.getLogger(__name__)

QUEUE_GROUP = "netboxrw.queue"

TRANSITIONS: dict[str, set[str]] = {
    ChangeState.PENDING: {ChangeState.APPROVED, ChangeState.REJECTED, ChangeState.EXPIRED},
    ChangeState.APPROVED: {ChangeState.APPLYING},
    ChangeState.APPLYING: {ChangeState.APPLIED, ChangeState.FAILED, ChangeState.CONFLICT},
    ChangeState.REJECTED: set(),
    ChangeState.APPLIED: set(),
    ChangeState.FAILED: set(),
    ChangeState.CONFLICT: set(),
    ChangeState.EXPIRED: set(),
}


class ReviewForbidden(ApplicationError):
    """The caller may not review this request (no permission, or it is their own)."""

    status_code = 403
    code = "forbidden"


@dataclass(frozen=True)
class Requester:
    user: User | None
    via: str
    conversation_id: str | None = None


def _transition(
    change: ChangeRequest, to: str, *, actor: User | None, label: str = "", comment: str = ""
) -> None:
    """Move ``change`` (already locked) to ``to`` and record the event; refuses moves off the graph."""
    if to not in TRANSITIONS[change.state]:
        raise ConflictError(f"change request #{change.pk} is {change.state}; it cannot become {to}")
    ChangeEvent.objects.create(
        change_request=change,
        from_state=change.state,
        to_state=to,
        actor=actor,
        actor_label=label or (actor.get_username() if actor is not None else "system"),
        comment=comment,
        request_id=get_guid() or "",
    )
    change.state = to
    change.save()
    transaction.on_commit(lambda: _announce(change))


def _announce(change: ChangeRequest) -> None:
    """Tell open queue pages and the conversation that asked (coarse events on the channel layer)."""
    event = {"type": "change.updated", "id": change.pk, "state": change.state, "summary": change.summary}
    _broadcast(change, event, conversation_type="change.outcome")


def _broadcast(change: ChangeRequest, event: dict[str, Any], *, conversation_type: str) -> None:
    """``event`` to the queue pages, and as ``conversation_type`` to the asking conversation.

    Best effort: the state is already committed, so a channel-layer failure is logged, not raised.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(QUEUE_GROUP, event)
        if change.conversation_id:
            async_to_sync(layer.group_send)(
                f"chat.{change.conversation_id}", {**event, "type": conversation_type}
            )
    except Exception:
        logger.exception("could not announce change request update", extra={"change_request": change.pk})


def change_request_create(*, plan: Plan, arguments: dict[str, Any], requester: Requester) -> ChangeRequest:
    """Store a confirmed plan as a pending request (nothing is written to NetBox)."""
    if plan.is_noop:
        raise ApplicationError("nothing to change: NetBox already matches")
    with transaction.atomic():
        change = ChangeRequest.objects.create(
            tool=plan.tool,
            arguments=arguments,
            plan=plan.to_json(),
            summary=plan.summary[:500],
            object_types=plan.object_types(),
            requested_by=requester.user,
            requested_via=requester.via[:200],
            conversation_id=requester.conversation_id,
        )
        ChangeEvent.objects.create(
            change_request=change,
            to_state=ChangeState.PENDING,
            actor=requester.user,
            actor_label=requester.user.get_username() if requester.user is not None else requester.via,
            request_id=get_guid() or "",
        )
        transaction.on_commit(lambda: _announce(change))
    logger.info(
        "change request created",
        extra={"change_request": change.pk, "tool": plan.tool, "operations": len(plan.operations)},
    )
    return change


def _check_reviewer(change: ChangeRequest, reviewer: User) -> None:
    if not reviewer.has_perm("netboxrw.approve_changerequest"):
        raise ReviewForbidden("you need the permission netboxrw.approve_changerequest to review changes")
    own = change.requested_by_id is not None and change.requested_by_id == reviewer.pk
    if own and not settings.CHANGE_REVIEW_ALLOW_SELF_APPROVAL:
        raise ReviewForbidden("the requester cannot review their own change; another engineer must")


def change_request_reject(*, change_id: int, reviewer: User, comment: str = "") -> ChangeRequest:
    with transaction.atomic():
        change = ChangeRequest.objects.select_for_update().get(pk=change_id)
        _check_reviewer(change, reviewer)
        change.reviewer, change.review_comment, change.reviewed_at = reviewer, comment, timezone.now()
        _transition(change, ChangeState.REJECTED, actor=reviewer, comment=comment)
    return change


def change_request_approve(*, change_id: int, reviewer: User, comment: str = "") -> ChangeRequest:
    """Record the approval and queue the apply; returns at once (the change is ``approved``).

    A worker (``manage.py worker``) claims and applies it. The task row is written in the same
    transaction as the approval, so an approved change is always queued, exactly once; of several
    concurrent approvals exactly one gets past the row lock. NetBox is asked first: when it is
    unreachable the approval is refused with a clear error and the request stays pending.
    """
    from netboxrw.tasks import apply_change_request

    change_requests_expire()
    _check_reviewer(ChangeRequest.objects.get(pk=change_id), reviewer)
    client = netbox_client()
    if client is not None and not settings.NETBOX_DRY_RUN:
        try:
            client.status()
        except NetBoxError as exc:
            raise NetBoxError(
                f"{exc.message}; change request #{change_id} stays pending", status=exc.status
            ) from None
    with transaction.atomic():
        change = ChangeRequest.objects.select_for_update().get(pk=change_id)
        _check_reviewer(change, reviewer)
        change.reviewer, change.review_comment, change.reviewed_at = reviewer, comment, timezone.now()
        change.progress_total = len(change.plan.get("operations", []))
        _transition(change, ChangeState.APPROVED, actor=reviewer, comment=comment)
        apply_change_request.enqueue(change.pk)
    return change


def change_request_apply(*, change_id: int, worker_id: str) -> str:
    """Claim an approved request and apply it (in a worker); the final state, or why not claimed.

    The claim is a row lock that skips rows another worker holds, then a lease this worker renews
    while it writes; every write is journalled first (:class:`netboxrw.journal.DatabaseJournal`).
    """
    with transaction.atomic():
        change = (
            ChangeRequest.objects.select_for_update(skip_locked=True)
            .filter(pk=change_id, state=ChangeState.APPROVED)
            .first()
        )
        if change is None:
            return "not claimed: not approved, or another worker has it"
        change.claimed_by = worker_id
        change.lease_expires_at = _lease_end()
        _transition(change, ChangeState.APPLYING, actor=change.reviewer, label=_actor_label(change))
    with _Lease(change.pk, worker_id):
        return _apply(change, worker_id)


def _actor_label(change: ChangeRequest) -> str:
    return change.reviewer.get_username() if change.reviewer is not None else "system"


def _lease_end() -> Any:
    return timezone.now() + timedelta(seconds=settings.CHANGE_APPLY_LEASE_SECONDS)


class _Lease:
    """Renews this worker's lease on a change every third of its length, in a thread, until closed."""

    def __init__(self, change_id: int, worker_id: str) -> None:
        self.change_id, self.worker_id = change_id, worker_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{change_id}", daemon=True)

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _renew(self) -> None:
        try:
            while not self._stop.wait(settings.CHANGE_APPLY_LEASE_SECONDS / 3):
                ChangeRequest.objects.filter(pk=self.change_id, claimed_by=self.worker_id).update(
                    lease_expires_at=_lease_end()
                )
        except Exception:  # the database went away: the lease runs out and recovery takes over
            logger.exception("could not renew the apply lease", extra={"change_request": self.change_id})
        finally:
            connection.close()


def _apply(change: ChangeRequest, worker_id: str) -> str:
    """Run the executor outside the lock; record the outcome (applied, failed or conflict)."""
    from netboxrw.journal import DatabaseJournal

    client = netbox_client()
    approver = _actor_label(change)
    message = f"netops change request #{change.pk}: {change.summary} (approved by {approver})"
    if client is None:
        outcome, result, error = (
            ChangeState.FAILED,
            {"outcome": "failed"},
            "NetBox is not configured (NETBOX_URL)",
        )
    else:
        executor = Executor(
            client,
            message=message[:200],
            log_context={"change_request": change.pk, "approver": approver, "worker": worker_id},
            dry_run=settings.NETBOX_DRY_RUN,
            journal=DatabaseJournal(
                change, worker_id, on_progress=lambda done, total: _announce_progress(change, done, total)
            ),
        )
        try:
            applied = executor.apply(Plan.from_json(change.plan))
            outcome = {
                "applied": ChangeState.APPLIED,
                "failed": ChangeState.FAILED,
                "conflict": ChangeState.CONFLICT,
            }[applied.outcome]
            result, error = applied.to_json(), "" if applied.outcome == "applied" else applied.message
            if applied.conflicts:
                error = "; ".join(applied.conflicts)
        except NetBoxError as exc:  # NetBox unreachable during the drift check: nothing was written
            outcome, result, error = ChangeState.FAILED, {"outcome": "failed", "message": str(exc)}, str(exc)
    _finish(change.pk, outcome, result=result, error=error)
    return outcome


def _finish(change_id: int, outcome: str, *, result: dict[str, Any], error: str) -> None:
    with transaction.atomic():
        locked = ChangeRequest.objects.select_for_update().get(pk=change_id)
        locked.result, locked.error = result, error
        locked.claimed_by, locked.lease_expires_at = "", None
        if outcome == ChangeState.APPLIED:
            locked.applied_at = timezone.now()
            locked.progress_done = locked.progress_total
        _transition(locked, outcome, actor=locked.reviewer, label=_actor_label(locked), comment=error[:1000])


def _announce_progress(change: ChangeRequest, done: int, total: int) -> None:
    """Tell the queue pages and the asking conversation how far an apply is (best effort)."""
    event = {
        "type": "change.progress",
        "id": change.pk,
        "state": ChangeState.APPLYING,
        "done": done,
        "total": total,
    }
    _broadcast(change, event, conversation_type="change.progress")


RECOVERY_MAX_DELAY = 300.0


def _fully_written(change: ChangeRequest) -> bool:
    """Every operation of the plan is in a ``written`` journal step (nothing is left to do or undo)."""
    from netboxrw.models import JournalState

    steps = list(change.journal.all())
    planned = len(change.plan.get("operations", []))
    written = sum(len(step.operations) for step in steps if step.state == JournalState.WRITTEN)
    return planned > 0 and written == planned and all(step.state == JournalState.WRITTEN for step in steps)


def change_requests_recover(*, worker_id: str) -> int:
    """Settle every change whose worker died mid-apply (lease run out): roll it back from its journal.

    The change ends ``failed`` with "interrupted by a worker crash, rolled back" and what was undone.
    NetBox unreachable: the change stays ``applying``, says so in ``error``, and is retried with
    exponential backoff (nothing undone so far is lost: steps are marked undone one by one).
    Returns how many changes were settled.
    """
    now = timezone.now()
    abandoned = ChangeRequest.objects.filter(state=ChangeState.APPLYING, lease_expires_at__lt=now).filter(
        models.Q(next_recovery_at__isnull=True) | models.Q(next_recovery_at__lte=now)
    )
    settled = 0
    for change_id in abandoned.values_list("pk", flat=True):
        with transaction.atomic():
            change = (
                ChangeRequest.objects.select_for_update(skip_locked=True)
                .filter(pk=change_id, state=ChangeState.APPLYING, lease_expires_at__lt=timezone.now())
                .first()
            )
            if change is None:
                continue  # another worker is recovering it, or its worker came back
            crashed_worker = change.claimed_by
            change.claimed_by, change.lease_expires_at = worker_id, _lease_end()
            change.save(update_fields=["claimed_by", "lease_expires_at", "updated"])
        with _Lease(change.pk, worker_id):
            settled += _recover(change, crashed_worker)
    return settled


def _recover(change: ChangeRequest, crashed_worker: str) -> int:
    from netboxrw.journal import rollback

    writer = change.journal.order_by("-seq").values_list("worker", flat=True).first() or crashed_worker
    if _fully_written(change):
        # The worker died after its last write, before recording the outcome: the change is applied.
        objects = [
            {"action": step.action, "object_type": step.endpoint, "id": object_id}
            for step in change.journal.order_by("seq")
            for object_id in step.object_ids
        ]
        _finish(
            change.pk,
            ChangeState.APPLIED,
            result={
                "outcome": "applied",
                "message": "applied; outcome recorded after a worker crash",
                "objects": objects,
            },
            error="",
        )
        logger.warning(
            "crashed change found fully written", extra={"change_request": change.pk, "worker": writer}
        )
        return 1
    client = netbox_client()
    message = f"netops change request #{change.pk}: rollback after a worker crash"
    try:
        if client is None:
            raise NetBoxError("NetBox is not configured (NETBOX_URL)")
        undone = rollback(client, change, message=message[:200])
    except NetBoxError as exc:
        attempts = change.recovery_attempts + 1
        delay = min(RECOVERY_MAX_DELAY, 2.0**attempts)
        ChangeRequest.objects.filter(pk=change.pk).update(
            recovery_attempts=attempts,
            next_recovery_at=timezone.now() + timedelta(seconds=delay),
            lease_expires_at=timezone.now(),  # free for the next attempt, by any worker
            claimed_by="",
            error=f"interrupted by a worker crash; rolling back waits for NetBox ({exc.message}); "
            f"attempt {attempts}, next in {delay:.0f} s",
        )
        logger.warning(
            "change recovery waits for NetBox", extra={"change_request": change.pk, "attempt": attempts}
        )
        return 0
    # The journal names the worker that was writing (a failed recovery attempt may have claimed since).
    error = f"interrupted by a worker crash ({writer or 'unknown worker'}), rolled back"
    error += f": {'; '.join(undone)}" if undone else ": nothing had been written"
    _finish(
        change.pk,
        ChangeState.FAILED,
        result={"outcome": "failed", "rolled_back": undone},
        error=error,
    )
    logger.warning("crashed change rolled back", extra={"change_request": change.pk, "undone": len(undone)})
    return 1


def change_requests_expire() -> int:
    """Expire pending requests older than ``CHANGE_REQUEST_TTL_HOURS``; returns how many."""
    cutoff = timezone.now() - timedelta(hours=settings.CHANGE_REQUEST_TTL_HOURS)
    expired = 0
    for change_id in ChangeRequest.objects.filter(state=ChangeState.PENDING, created__lt=cutoff).values_list(
        "pk", flat=True
    ):
        with transaction.atomic():
            change = ChangeRequest.objects.select_for_update().get(pk=change_id)
            if change.state == ChangeState.PENDING:
                _transition(
                    change, ChangeState.EXPIRED, actor=None, label="system", comment="not reviewed in time"
                )
                expired += 1
    return expired


def change_request_revert(*, change_id: int, requester: Requester) -> ChangeRequest:
    """Plan the inverse of an applied change as a new pending request (through the same review)."""
    change = ChangeRequest.objects.get(pk=change_id)
    if change.state != ChangeState.APPLIED:
        raise ConflictError(f"only applied changes can be reverted; #{change.pk} is {change.state}")
    client = netbox_client()
    if client is None:
        raise ApplicationError("NetBox is not configured (NETBOX_URL)", 503)
    plan = Plan.from_json(change.plan)
    created = {
        (o["object_type"], o["id"])
        for o in (change.result or {}).get("objects", [])
        if o["action"] == "create"
    }
    operations = []
    for op in reversed(plan.operations):
        if op.action == "update" and op.id is not None:
            current, _ = client.get(op.endpoint, op.id)
            inverse = update_op(op.endpoint, current, op.before or {}, op.display)
            if inverse is not None:
                operations.append(inverse)
        elif op.action == "delete" and op.before:
            data = {k: v for k, v in op.before.items() if v is not None}
            operations.append(create_op(op.endpoint, op.display, data))
    for endpoint, object_id in sorted(created, key=lambda item: item[0] == "dcim/devices"):
        try:
            current, _ = client.get(endpoint, object_id)
        except NetBoxError as exc:
            if exc.status == 404:
                continue
            raise
        from netboxrw.plans import delete_op

        operations.append(delete_op(endpoint, current, current.get("display", str(object_id)), ["display"]))
    inverse_plan = Plan(f"revert:{change.tool}", f"Revert #{change.pk}: {change.summary}"[:500], operations)
    new = change_request_create(plan=inverse_plan, arguments={"revert": change.pk}, requester=requester)
    new.reverts = change
    new.save(update_fields=["reverts"])
    return new
