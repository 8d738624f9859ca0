"""The change-review queue: list with filters and counts, detail with a side-by-side diff, review actions."""

from __future__ import annotations

from typing import cast

from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from netboxrw import selectors, services
from netboxrw.models import ChangeRequest, ChangeState
from netops.errors import ApplicationError

PAGE_LIST = "netboxrw/queue.html"
PAGE_DETAIL = "netboxrw/detail.html"
# Operations drawn in the diff unless ?all=1: a seeded region is thousands; the counts table says the rest.
DIFF_SHOWN = 200


@require_GET
@login_required
@vary_on_headers("HX-Request")
def queue(request: HttpRequest) -> HttpResponse:
    """Reviewers (view or approve permission) see every request; anyone else their own."""
    filters = {k: request.GET.get(k, "") for k in ("state", "requester", "object_type")}
    changes = selectors.change_requests(filters, visible_to=request.user)[:200]
    context = {
        "changes": changes,
        "filters": filters,
        "counts": selectors.state_counts(visible_to=request.user),
        "states": ChangeState.choices,
        "sees_all": selectors.sees_every_change(request.user),
    }
    template = f"{PAGE_LIST}#queue-table" if getattr(request, "htmx", False) else PAGE_LIST
    return render(request, template, context)


def _detail_context(request: HttpRequest, change: ChangeRequest, error: str = "") -> dict[str, object]:
    operations = change.plan.get("operations", [])
    shown = operations if request.GET.get("all") == "1" else operations[:DIFF_SHOWN]
    return {
        "change": change,
        "operations": shown,
        "operation_count": len(operations),
        "operation_counts": selectors.operation_counts(operations) if len(operations) > 10 else [],
        "events": change.events.select_related("actor"),
        "can_review": change.state == ChangeState.PENDING and selectors.can_review(request.user, change),
        "is_requester": change.requested_by_id == request.user.pk,
        "error": error,
    }


@require_GET
@login_required
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    change = get_object_or_404(selectors.change_requests_visible_to(request.user), pk=pk)
    return render(request, PAGE_DETAIL, _detail_context(request, change))


@require_POST
@login_required
def review(request: HttpRequest, pk: int, decision: str) -> HttpResponse:
    """Approve (and apply), reject or revert; answers with the detail panel (htmx) or the page.

    Who may decide is the services' rule (approve permission, never one's own request), so the
    page and the REST API cannot drift apart.
    """
    change = get_object_or_404(selectors.change_requests_visible_to(request.user), pk=pk)
    user = cast(User, request.user)  # login_required: never anonymous here
    comment = request.POST.get("comment", "").strip()
    error = ""
    status = 200
    try:
        if decision == "approve":
            change = services.change_request_approve(change_id=change.pk, reviewer=user, comment=comment)
        elif decision == "reject":
            change = services.change_request_reject(change_id=change.pk, reviewer=user, comment=comment)
        else:
            requester = services.Requester(
                user=user, via=f"revert from the queue by {request.user.get_username()}"
            )
            change = services.change_request_revert(change_id=change.pk, requester=requester)
    except ApplicationError as exc:
        error, status = str(exc), exc.status_code  # the status comes from the error's type
    template = f"{PAGE_DETAIL}#panel" if getattr(request, "htmx", False) else PAGE_DETAIL
    response = render(
        request,
        template,
        _detail_context(request, change, error),
        status=200 if getattr(request, "htmx", False) else status,
    )
    if decision == "revert" and not error and getattr(request, "htmx", False):
        response["HX-Redirect"] = f"/changes/{change.pk}/"
    return response
