"""Reads for the change queue: filtered lists and counts, the same for the page and the API."""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.db.models import Count, QuerySet

from netboxrw.models import ChangeRequest, ChangeState


def change_requests(filters: dict[str, Any]) -> QuerySet[ChangeRequest]:
    """Requests filtered by ``state``, ``requester`` (user name) and ``object_type`` (e.g. dcim/devices)."""
    queryset = ChangeRequest.objects.select_related("requested_by", "reviewer").order_by("-created")
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


def state_counts() -> dict[str, int]:
    counts = dict(
        ChangeRequest.objects.values_list("state").annotate(n=Count("id")).values_list("state", "n")
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
