"""The tool catalog page: servers with their health, their tools, and a "check now" button."""

from __future__ import annotations

import json

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET, require_POST
from django.views.decorators.vary import vary_on_headers

from registry import services
from registry.catalog import ToolCatalog
from registry.models import MCPServer

PAGE = "registry/catalog.html"


@require_GET
@login_required
@permission_required("registry.view_mcpserver", raise_exception=True)
@vary_on_headers("HX-Request")
def catalog(request: HttpRequest) -> HttpResponse:
    """Every registered server (healthy or not) and the built-in tools."""
    servers = MCPServer.objects.order_by("name")
    builtin = [t for t in ToolCatalog.load(server_ids=[]).tools() if t.source_kind == "builtin"]
    return render(
        request,
        PAGE,
        {
            "servers": servers,
            "builtin_tools": builtin,
            "usable_tool_count": len(ToolCatalog.load()),
            "can_check": request.user.has_perm("registry.change_mcpserver"),
        },
    )


@require_POST
@login_required
@permission_required("registry.change_mcpserver", raise_exception=True)
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
@permission_required("registry.view_mcpserver", raise_exception=True)
def server_tools(request: HttpRequest, pk: str) -> HttpResponse:
    """The cached tools of one server with their input schemas (loaded when a row is expanded)."""
    server = get_object_or_404(MCPServer, pk=pk)
    tools = [
        {**tool, "schema_json": json.dumps(tool.get("input_schema", {}), indent=2, sort_keys=True)}
        for tool in server.tools or []
    ]
    return render(request, f"{PAGE}#server-tools", {"server": server, "tools": tools})
