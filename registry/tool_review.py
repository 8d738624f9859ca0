"""An admin's word over a tool: accept a held definition, keep it held, enable, disable, set access.

The catalog reads these rows on every load, so a change is offered (or withdrawn) on every face
from the next request on. Callers pass the acting user; each service checks ``registry.change_tool`` itself (a view's
decorator is the first check, not the only one).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from django.db import transaction
from django.utils import timezone

from netops.errors import ApplicationError, ConflictError, PermissionDeniedError
from registry.models import Tool, ToolAccess, ToolReview

logger = logging.getLogger(__name__)

REVIEW_PERMISSION = "registry.change_tool"


class Reviewer(Protocol):
    """The user acting (a Django user)."""

    @property
    def pk(self) -> Any: ...

    def has_perm(self, perm: str, obj: Any = None) -> bool: ...


def _check(actor: Reviewer) -> None:
    if not actor.has_perm(REVIEW_PERMISSION):
        raise PermissionDeniedError(f"reviewing tools needs the permission {REVIEW_PERMISSION}")


def _locked(tool: Tool) -> Tool:
    return Tool.objects.select_for_update().select_related("server").get(pk=tool.pk)


def _sync_instance(tool: Tool, locked: Tool) -> Tool:
    for field in locked._meta.concrete_fields:
        setattr(tool, field.attname, getattr(locked, field.attname))
    return tool


def tool_accept(*, tool: Tool, actor: Reviewer, fingerprint: str) -> Tool:
    """Make the held definition the accepted one; the tool is offered again (with it).

    ``fingerprint`` is the pending fingerprint the admin reviewed: if the server changed the
    definition again since the page was shown, nothing is accepted (409) — an admin never accepts
    a definition they did not see.
    """
    from registry.tool_sync import accepted_fields

    _check(actor)
    with transaction.atomic():
        locked = _locked(tool)
        if locked.review == ToolReview.ACTIVE:
            raise ConflictError("the tool is not held; there is nothing to accept", field="review")
        if not fingerprint or fingerprint != locked.pending_fingerprint:
            raise ConflictError(
                "the definition changed again since it was shown; review the new one", field="fingerprint"
            )
        for name, value in accepted_fields(locked.pending_definition or {}, fingerprint).items():
            setattr(locked, name, value)
        locked.reviewed_at, locked.reviewed_by_id = timezone.now(), actor.pk
        locked.full_clean()
        locked.save()
    logger.info("mcp tool accepted", extra={"tool": locked.public_name, "server": locked.server.name})
    return _sync_instance(tool, locked)


def tool_keep_held(*, tool: Tool, actor: Reviewer) -> Tool:
    """Record that an admin looked at the held definition and left it held (it stays unoffered)."""
    _check(actor)
    with transaction.atomic():
        locked = _locked(tool)
        if locked.review == ToolReview.ACTIVE:
            raise ConflictError("the tool is not held", field="review")
        locked.reviewed_at, locked.reviewed_by_id = timezone.now(), actor.pk
        locked.save(update_fields=["reviewed_at", "reviewed_by", "last_updated"])
    return _sync_instance(tool, locked)


def tool_set_enabled(*, tool: Tool, actor: Reviewer, enabled: bool) -> Tool:
    """Enable or disable one tool; a disabled tool is offered to no face."""
    _check(actor)
    with transaction.atomic():
        locked = _locked(tool)
        if locked.enabled != enabled:
            locked.enabled = enabled
            locked.save(update_fields=["enabled", "last_updated"])
        return _sync_instance(tool, locked)


def tool_set_access(*, tool: Tool, actor: Reviewer, access: str) -> Tool:
    """Set the admin's word on whether the tool writes (``inherit``, ``read_only``, ``writable``)."""
    _check(actor)
    if access not in ToolAccess.values:
        raise ApplicationError(f"one of {', '.join(ToolAccess.values)}", field="access")
    with transaction.atomic():
        locked = _locked(tool)
        if locked.access != access:
            locked.access = access
            locked.save(update_fields=["access", "last_updated"])
        return _sync_instance(tool, locked)
