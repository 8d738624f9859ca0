"""Reads for the change queue: filtered lists and counts, the same for the page and the API."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.db.models import Count, QuerySet

from netboxrw.models import ChangeRequest, ChangeState

REVIEW_PERMISSIONS = ("netboxrw.view_changerequest", "netboxrw.approve_changerequest")


def sees_every_change(user: Any) -> bool:
    """Whether ``user`` sees the whole queue (view or approve permission), not only their own."""
    return any(user.has_perm(perm) for perm in REVIEW_PERMISSIONS)


def change_requests_visible_to(user: Any) -> QuerySet[ChangeRequest]:
    """Every request for reviewers; for anyone else the requests they made (from their
    conversations and their API keys), read-only."""
    queryset = ChangeRequest.objects.all()
    return queryset if sees_every_change(user) else queryset.filter(requested_by_id=user.pk)


def change_requests(filters: dict[str, Any], *, visible_to: Any) -> QuerySet[ChangeRequest]:
    """Requests ``visible_to`` the user, filtered by ``state``, ``requester`` (user name) and
    ``object_type`` (e.g. dcim/devices)."""
    queryset = (
        change_requests_visible_to(visible_to).select_related("requested_by", "reviewer").order_by("-created")
    )
    if state := filters.get("state"):
        queryset = queryset.filter(state=state)
    if requester := filters.get("requester"):
        queryset = queryset.filter(requested_by__username=requester)
    if object_type := filters.get("object_type"):
        queryset = (
            queryset.filter(object_types__contains=[object_type])
            if _json_contains()
            else queryset.filter(object_types__icontains=object_type)
        )
    return queryset


def _json_contains() -> bool:
    from django.db import connection

    return connection.vendor == "postgresql"


def state_counts(*, visible_to: Any) -> dict[str, int]:
    counts = dict(
        change_requests_visible_to(visible_to)
        .values_list("state")
        .annotate(n=Count("id"))
        .values_list("state", "n")
    )
    return {state: counts.get(state, 0) for state in ChangeState.values}


def operation_counts(operations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Objects per (object type, action), in plan order: a large change (a seed region) at a glance."""
    counts = Counter((op.get("endpoint", ""), op.get("action", "")) for op in operations)
    return [{"endpoint": e, "action": a, "count": n} for (e, a), n in counts.items()]


def can_review(user: Any, change: ChangeRequest) -> bool:
    from django.conf import settings

    if not user.has_perm("netboxrw.approve_changerequest"):
        return False
    return change.requested_by_id != user.pk or settings.CHANGE_REVIEW_ALLOW_SELF_APPROVAL
