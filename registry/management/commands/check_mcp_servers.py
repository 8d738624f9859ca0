"""``manage.py check_mcp_servers [--loop SECONDS] [--server NAME ...]``: health-check registered servers.

Run it from cron or as a long-running sidecar (``--loop``) so statuses and tool caches stay fresh.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry import services
from registry.models import MCPServer


class Command(BaseCommand):
    help = "Check registered MCP servers concurrently, record their status and refresh their tool lists."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--loop", type=float, metavar="SECONDS", help="Repeat every SECONDS until stopped."
        )
        parser.add_argument("--server", action="append", default=[], metavar="NAME", help="Only this server.")

    def handle(self, *args: Any, loop: float | None, server: list[str], **options: Any) -> None:
        if loop is not None and loop <= 0:
            raise CommandError("--loop needs a positive number of seconds")
        while True:
            started = time.monotonic()
            self._check_once(server)
            if loop is None:
                return
            time.sleep(max(0.0, loop - (time.monotonic() - started)))

    def _check_once(self, names: list[str]) -> None:
        servers = MCPServer.objects.filter(enabled=True)
        if names:
            servers = servers.filter(name__in=names)
            missing = set(names) - set(servers.values_list("name", flat=True))
            if missing:
                raise CommandError(f"no enabled server named {', '.join(sorted(missing))}")
        outcomes = services.mcp_servers_check_health(servers=list(servers))
        for outcome in outcomes:
            line = (
                f"{outcome.server.name}: {outcome.status}"
                f"{' (changed)' if outcome.changed else ''}, {outcome.server.tool_count} tools, "
                f"{outcome.duration_ms:.0f} ms"
            )
            if outcome.error:
                line += f" - {outcome.error}"
            self.stdout.write(self.style.SUCCESS(line) if outcome.ok else self.style.ERROR(line))
        if not outcomes:
            self.stdout.write("no enabled servers to check")
