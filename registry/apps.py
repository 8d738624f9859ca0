"""App config for the registry: LLM models, MCP servers and the tool catalog."""

from __future__ import annotations

from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "registry"
    verbose_name = "Registry"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        from netops.scheduling import PeriodicJob, register_periodic
        from registry import tasks

        register_periodic(
            PeriodicJob(
                "check_mcp_servers", tasks.check_mcp_servers, lambda: settings.MCP_HEALTH_CHECK_INTERVAL
            )
        )
        from registry import (
            checks,  # noqa: F401  (registers the system check registry.W001)
            sessions,
            signals,
        )

        sessions.configure(
            idle_seconds=settings.MCP_SESSION_IDLE_SECONDS, max_concurrency=settings.MCP_SESSION_CONCURRENCY
        )
        signals.connect()
