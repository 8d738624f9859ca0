"""System check ``registry.W001``: stored secret references that the policy now refuses.

Rows saved before the policy of :mod:`netops.secrets` existed (or before the operator narrowed
``SECRET_ENV_ALLOW`` / ``SECRET_FILE_DIRS``) may point at netops' own configuration or outside the
allowed directories. They are refused at use anyway; ``manage.py check`` names them so the
operator can fix or clear them. Only references are named, never a value.
"""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Warning, register
from django.db import DatabaseError

from netops.secrets import SecretError, looks_like_secret_reference, validate_secret_reference


def _stored_references() -> list[tuple[str, str, str]]:
    """(entry, field, reference) for every secret reference stored in the registry."""
    from registry.models import LLMModel, MCPServer

    found = [
        (f"LLM model {name!r}", "api_key_ref", ref)
        for name, ref in LLMModel.objects.exclude(api_key_ref="").values_list("name", "api_key_ref")
    ]
    for name, ref, env in MCPServer.objects.values_list("name", "auth_secret_ref", "env"):
        if ref:
            found.append((f"MCP server {name!r}", "auth_secret_ref", ref))
        for key, value in (env or {}).items() if isinstance(env, dict) else ():
            if isinstance(value, str) and looks_like_secret_reference(value):
                found.append((f"MCP server {name!r}", f"env.{key}", value))
    return found


# Not tagged "database": plain `manage.py check` (and migrate, deploy checks) should show it.
@register("registry")
def stored_secret_references_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Warn about each stored reference that :func:`validate_secret_reference` refuses."""
    try:
        references = _stored_references()
    except DatabaseError:  # not migrated yet (manage.py migrate runs the checks first)
        return []
    warnings: list[CheckMessage] = []
    for entry, field, reference in references:
        try:
            validate_secret_reference(reference)
        except SecretError as exc:
            warnings.append(
                Warning(
                    f"{entry}: {field}: {exc.message}",
                    hint="Change or clear the reference; netops refuses to resolve it.",
                    id="registry.W001",
                )
            )
    return warnings
