"""Change requests: create from a plan, approve (and apply), reject, expire, revert.

Transitions form one graph (:data:`TRANSITIONS`), enforced here under a row lock, so two approvals
racing for the same request apply it once. Every transition appends a :class:`ChangeEvent`; queue
pages and the requesting conversation are told after commit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
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
    layer = get_channel_layer()
    if layer is None:
        return
    event = {"type": "change.updated", "id": change.pk, "state": change.state, "summary": change.summary}
    try:
        async_to_sync(layer.group_send)(QUEUE_GROUP, event)
        if change.conversation_id:
            async_to_sync(layer.group_send)(
                f"chat.{change.conversation_id}", {**event, "type": "change.outcome"}
            )
    except Exception:  # announcing is best effort; the state is already committed
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
    """Approve and apply. Exactly one of several concurrent approvals gets past the lock.

    NetBox is asked first: when it is unreachable the approval is refused with a clear error and the
    request stays pending, untouched, to be approved again later.
    """
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
        _transition(change, ChangeState.APPROVED, actor=reviewer, comment=comment)
        _transition(change, ChangeState.APPLYING, actor=reviewer)
    return _apply(change, reviewer)


def _apply(change: ChangeRequest, reviewer: User) -> ChangeRequest:
    """Run the executor outside the lock; record the outcome (applied, failed or conflict)."""
    client = netbox_client()
    message = f"netops change request #{change.pk}: {change.summary} (approved by {reviewer.get_username()})"
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
            log_context={"change_request": change.pk, "approver": reviewer.get_username()},
            dry_run=settings.NETBOX_DRY_RUN,
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
    with transaction.atomic():
        locked = ChangeRequest.objects.select_for_update().get(pk=change.pk)
        locked.result, locked.error = result, error
        if outcome == ChangeState.APPLIED:
            locked.applied_at = timezone.now()
        _transition(locked, outcome, actor=reviewer, comment=error[:1000])
    return locked


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
