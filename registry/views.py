"""The tool catalog page: servers with their health and tools, held tools with their diffs, and the
admin's controls (check now; per tool: accept / keep held, enable / disable, access).

Reviewing tools needs ``registry.change_tool`` (the Tool model's change permission, the same one
the admin uses); every POST answers the updated fragment for htmx, or redirects back to the page.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from netops.decorators import permission_required
from netops.errors import ApplicationError
from netops.types import HtmxHttpRequest
from registry import services, tool_review
from registry.catalog import ToolCatalog
from registry.models import MCPServer, Tool, ToolAccess
from registry.selectors import mcp_server_tools, tools_held
from registry.tool_diff import definition_diff

PAGE = "registry/catalog.html"
REVIEW = tool_review.REVIEW_PERMISSION


@require_GET
@login_required
@permission_required("registry.view_mcpserver")
@vary_on_headers("HX-Request")
def catalog(request: HttpRequest) -> HttpResponse:
    """Every registered server (healthy or not) and the built-in tools."""
    servers = MCPServer.objects.order_by("name").prefetch_related("tools")
    builtin = [t for t in ToolCatalog.load(server_ids=[]).tools() if t.source_kind == "builtin"]
    return render(
        request,
        PAGE,
        {
            "servers": servers,
            "builtin_tools": builtin,
            "usable_tool_count": len(ToolCatalog.load()),
            "can_check": request.user.has_perm("registry.change_mcpserver"),
            "can_review": request.user.has_perm(REVIEW),
            "held": [_held_entry(tool) for tool in tools_held()],
        },
    )


def _held_entry(tool: Tool) -> dict[str, Any]:
    """A held tool with the diff of its accepted definition (none for a new tool) and the pending one."""
    old = None if tool.review == "held_new" else tool.definition()
    diff = definition_diff(old, tool.pending_definition or {})
    unchanged = [field.label.lower() for field in diff if not field.changed]
    return {"tool": tool, "diff": diff, "unchanged": unchanged if old is not None else []}


@require_POST
@login_required
@permission_required("registry.change_mcpserver")
def server_check(request: HttpRequest, pk: str) -> HttpResponse:
    """Check one server now and answer with its updated row (swapped in place by htmx)."""
    server = get_object_or_404(MCPServer, pk=pk)
    outcome = services.mcp_servers_check_health(servers=[server])
    return render(
        request,
        f"{PAGE}#server-row",
        {"server": server, "can_check": True, "just_checked": outcome[0] if outcome else None},
    )


@require_GET
@login_required
@permission_required("registry.view_mcpserver")
def server_tools(request: HttpRequest, pk: str) -> HttpResponse:
    """The cached tools of one server with their input schemas (loaded when a row is expanded)."""
    server = get_object_or_404(MCPServer, pk=pk)
    tools = [_tool_entry(tool) for tool in mcp_server_tools(server=server)]
    return render(
        request,
        f"{PAGE}#server-tools",
        {"server": server, "tools": tools, "can_review": request.user.has_perm(REVIEW)},
    )


def _tool_entry(tool: Tool, error: str = "") -> dict[str, Any]:
    return {
        "tool": tool,
        "schema_json": json.dumps(tool.input_schema or {}, indent=2, sort_keys=True, ensure_ascii=False),
        "read_only": _read_only(tool),
        "access_choices": ToolAccess.choices,
        "error": error,
    }


def _read_only(tool: Tool) -> bool:
    """Whether the catalog offers the tool as read-only (the admin's word over the annotations)."""
    if tool.access != ToolAccess.INHERIT:
        return tool.access == ToolAccess.READ_ONLY
    return bool((tool.annotations or {}).get("readOnlyHint"))


# --- reviewing tools ---------------------------------------------------------------------------


def _fragment(
    request: HtmxHttpRequest, part: str, context: dict[str, Any], error: ApplicationError | None
) -> HttpResponse:
    """One part of the catalog page for htmx (with the error's status), or back to the page."""
    if not request.htmx and error is None:
        return redirect("registry:catalog")
    response = render(request, f"{PAGE}#{part}", context)
    if error is not None:
        response.status_code = error.status_code
    return response


def _tool_row(request: HtmxHttpRequest, tool: Tool, error: ApplicationError | None = None) -> HttpResponse:
    context = {**_tool_entry(tool, error.message if error else ""), "can_review": True}
    return _fragment(request, "tool-row", context, error)


@require_POST
@login_required
@permission_required(REVIEW)
def tool_enabled(request: HtmxHttpRequest, pk: str) -> HttpResponse:
    """Enable (``enabled=on``) or disable (``enabled=off``) one tool."""
    tool = get_object_or_404(Tool.objects.select_related("server"), pk=pk)
    value = request.POST.get("enabled", "")
    try:
        if value not in ("on", "off"):
            raise ApplicationError("on or off", field="enabled")
        tool_review.tool_set_enabled(tool=tool, actor=request.user, enabled=value == "on")
    except ApplicationError as exc:
        return _tool_row(request, tool, exc)
    return _tool_row(request, tool)


@require_POST
@login_required
@permission_required(REVIEW)
def tool_access(request: HtmxHttpRequest, pk: str) -> HttpResponse:
    """Set the admin's word on whether the tool writes: inherit, read_only or writable."""
    tool = get_object_or_404(Tool.objects.select_related("server"), pk=pk)
    try:
        tool_review.tool_set_access(tool=tool, actor=request.user, access=request.POST.get("access", ""))
    except ApplicationError as exc:
        return _tool_row(request, tool, exc)
    return _tool_row(request, tool)


def _held_card(request: HtmxHttpRequest, tool: Tool, error: ApplicationError | None = None) -> HttpResponse:
    tool.refresh_from_db()
    context = {"entry": _held_entry(tool), "can_review": True, "error": error.message if error else ""}
    return _fragment(request, "held-tool", context, error)


@require_POST
@login_required
@permission_required(REVIEW)
def tool_accept(request: HtmxHttpRequest, pk: str) -> HttpResponse:
    """Accept the held definition whose fingerprint the form carries (the one the admin saw)."""
    tool = get_object_or_404(Tool.objects.select_related("server"), pk=pk)
    try:
        tool_review.tool_accept(
            tool=tool, actor=request.user, fingerprint=request.POST.get("fingerprint", "")
        )
    except ApplicationError as exc:
        return _held_card(request, tool, exc)
    return _held_card(request, tool)


@require_POST
@login_required
@permission_required(REVIEW)
def tool_keep_held(request: HtmxHttpRequest, pk: str) -> HttpResponse:
    """Record the review and leave the tool held."""
    tool = get_object_or_404(Tool.objects.select_related("server"), pk=pk)
    try:
        tool_review.tool_keep_held(tool=tool, actor=request.user)
    except ApplicationError as exc:
        return _held_card(request, tool, exc)
    return _held_card(request, tool)
