"""drf-spectacular hooks and extensions."""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular import authentication

ALIAS_PREFIX = "/api/plugins/ai-ops/"


def exclude_aliases(
    endpoints: list[tuple[str, str, str, Any]], **kwargs: Any
) -> list[tuple[str, str, str, Any]]:
    """Leave the plugin-path aliases out of the schema: they repeat the canonical ``/api/`` operations."""
    return [endpoint for endpoint in endpoints if not endpoint[0].startswith(ALIAS_PREFIX)]


class SessionScheme(authentication.SessionScheme):
    """netops' own session authentication (it names the log user) documented as DRF's: a cookie.

    drf-spectacular matches authenticators by exact class; this module is imported with the
    preprocessing hook above, before any schema is generated, which registers the extension.
    """

    target_class = "netops.authentication.SessionAuthentication"


ERROR_COMPONENT = "Error"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Every API error (netops.errors.exception_handler): a readable message, and for "
    "invalid input the per-field details.",
    "properties": {
        "error": {"type": "string"},
        "errors": {"description": "per-field messages (invalid input only)"},
        "request_id": {"type": "string", "description": "unexpected errors only: quote it to find the log"},
    },
    "required": ["error"],
}
ERRORS = {
    "400": "Invalid input; the message names the field.",
    "401": "No or invalid credentials.",
    "403": "Authenticated, but without the permission this needs.",
    "404": "No such object (or not visible to the caller).",
    "409": "The object's current state does not allow this.",
    "415": "Unsupported request content type.",
}
WRITE_METHODS = frozenset({"post", "put", "patch", "delete"})


def _error_statuses(method: str, operation: dict[str, Any], path: str) -> list[str]:
    """Which errors an operation can answer: every one may need credentials and a permission;
    those with a path id may not find it; those taking input may refuse it; writes may conflict."""
    statuses = ["401", "403"]
    if "{" in path:
        statuses.append("404")
    if operation.get("parameters") or "requestBody" in operation:
        statuses.append("400")
    if "requestBody" in operation:
        statuses.append("415")
    if method in WRITE_METHODS:
        statuses.append("409")
    return statuses


ALTERNATION = re.compile(r"^\^(\w+(?:\|\w+)+)\$$")


def _alternations_as_enums(operation: dict[str, Any]) -> None:
    """A path parameter from a URL regex such as ``(?P<fmt>json|md)`` comes out of drf-spectacular
    as the pattern ``^json|md$``, which (alternation binds loosest) admits ``jsonXYZ``: an enum says
    what the URL really accepts."""
    for parameter in operation.get("parameters", []):
        schema = parameter.get("schema", {})
        match = ALTERNATION.match(schema.get("pattern", "")) if parameter.get("in") == "path" else None
        if match:
            del schema["pattern"]
            schema["enum"] = match.group(1).split("|")


def complete_schema(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """Postprocessing hook: the error answers every operation really gives, in their one format.

    drf-spectacular documents only the success answer, so a client (and schemathesis, which checks
    that every status received is documented) could not know a 404 or 403 is part of the contract.
    """
    result.setdefault("components", {}).setdefault("schemas", {})[ERROR_COMPONENT] = ERROR_SCHEMA
    reference = {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            _alternations_as_enums(operation)
            for status in _error_statuses(method, operation, path):
                operation["responses"].setdefault(
                    status,
                    {"description": ERRORS[status], "content": {"application/json": {"schema": reference}}},
                )
    return result
