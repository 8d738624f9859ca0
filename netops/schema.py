"""drf-spectacular hooks."""

from __future__ import annotations

from typing import Any

ALIAS_PREFIX = "/api/plugins/ai-ops/"


def exclude_aliases(
    endpoints: list[tuple[str, str, str, Any]], **kwargs: Any
) -> list[tuple[str, str, str, Any]]:
    """Leave the plugin-path aliases out of the schema: they repeat the canonical ``/api/`` operations."""
    return [endpoint for endpoint in endpoints if not endpoint[0].startswith(ALIAS_PREFIX)]
