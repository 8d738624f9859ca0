"""Background jobs of the registry, run by ``manage.py worker``."""

from __future__ import annotations

from django_tasks import task

from registry import services
from registry.models import MCPServer


@task()
def check_mcp_servers() -> int:
    """Health-check every enabled server (concurrently, each bounded by its timeout); how many."""
    return len(services.mcp_servers_check_health(servers=list(MCPServer.objects.filter(enabled=True))))
