"""Syncing a server's discovered tool list into :class:`~registry.models.Tool` rows.

Every tool is fingerprinted (sha256 of the canonical JSON of its definition: title, description,
input and output schema, annotations). On a server's first successful discovery all its tools are
accepted. Later:

- a tool the server did not list before is held (``held_new``) unless the server accepts new tools;
- a known tool whose definition changed is always held (``held_changed``): the catalog keeps
  offering nothing for it until an admin accepts the new definition — a server cannot swap a
  harmless description for a malicious one behind the admin's back (a "rug pull");
- a tool gone from the list leaves the catalog but keeps its row, so its public name stays
  reserved while the server is registered.

Public names are given once, here, and never recomputed: the plain safe name when no other tool
(present or not) and no built-in tool holds it, else ``<server>__<name>``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from registry import revision
from registry.catalog import builtin_tool_names, namespaced_name, safe_name
from registry.models import MCPServer, Tool, ToolReview

logger = logging.getLogger(__name__)

DEFINITION_FIELDS = ("title", "description", "input_schema", "output_schema", "annotations")


def tool_definition(entry: dict[str, Any]) -> dict[str, Any]:
    """The reviewable part of a discovered tool, normalised (missing and empty are the same)."""
    return {
        "title": entry.get("title") or None,
        "description": str(entry.get("description") or ""),
        "input_schema": entry.get("input_schema") or {"type": "object", "properties": {}},
        "output_schema": entry.get("output_schema") or None,
        "annotations": dict(entry.get("annotations") or {}),
    }


# MCP tasks (spec 2025-11-25): a tool whose ``execution.taskSupport`` is "required" answers only a
# task-augmented tools/call, which netops' faces (agent, gateway, /mcp) do not make.
TASK_REQUIRED = (
    "needs MCP task augmentation (execution.taskSupport: required), which netops does not support; "
    "listed, offered to no face"
)


def unsupported_reason(entry: dict[str, Any]) -> str:
    """Why netops cannot call the discovered tool, or empty when it can."""
    execution = entry.get("execution")
    if isinstance(execution, dict) and execution.get("taskSupport") == "required":
        return TASK_REQUIRED
    return ""


def canonical_json(data: Any) -> str:
    """One spelling of ``data``: sorted keys, no whitespace, unicode kept."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def tool_fingerprint(definition: dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of a :func:`tool_definition`."""
    return hashlib.sha256(canonical_json(definition).encode()).hexdigest()


@dataclass(frozen=True)
class SyncReport:
    """What one sync did, and what waits for review after it."""

    accepted: tuple[str, ...] = ()
    held_new: tuple[str, ...] = ()
    held_changed: tuple[str, ...] = ()
    gone: tuple[str, ...] = ()
    returned: tuple[str, ...] = ()
    # Everything of the server waiting for review after this sync (held by this or an earlier one).
    waiting_new: int = 0
    waiting_changed: int = 0

    @property
    def note(self) -> str:
        """A short sentence for the server's health note, or empty when nothing waits for review."""
        parts = []
        if self.waiting_new:
            parts.append(f"{self.waiting_new} new tool{'s' if self.waiting_new != 1 else ''}")
        if self.waiting_changed:
            count = self.waiting_changed
            parts.append(f"{count} changed definition{'s' if count != 1 else ''}")
        return f"held for review: {', '.join(parts)}" if parts else ""


def server_tools_sync(
    *, server: MCPServer, tools: Sequence[dict[str, Any]], now: datetime | None = None
) -> SyncReport:
    """Bring ``server``'s Tool rows in line with ``tools`` (a healthy check's list).

    Runs in its own atomic block (a savepoint inside the caller's), with the server's rows locked,
    so two checks of the same server never both create a tool. ``server.tools_refreshed_at`` is
    read as given: None means this is the first successful discovery (everything is accepted), so
    callers sync before they record the refresh time.
    """
    now = now or timezone.now()
    first = server.tools_refreshed_at is None
    report: dict[str, list[str]] = {
        k: [] for k in ("accepted", "held_new", "held_changed", "gone", "returned")
    }
    with transaction.atomic(), revision.batched():
        rows = {row.name: row for row in Tool.objects.select_for_update().filter(server=server)}
        seen: set[str] = set()
        moved: list[Tool] = []
        for entry in tools:
            name = str(entry.get("name") or "")
            if not name or name in seen:
                continue  # a server listing a name twice: the first definition counts
            position = len(seen)
            seen.add(name)
            definition = tool_definition(entry)
            fingerprint = tool_fingerprint(definition)
            row = rows.get(name)
            if row is None:
                accept = first or server.accept_new_tools
                _tool_create(
                    server,
                    name,
                    definition,
                    fingerprint,
                    accept=accept,
                    now=now,
                    position=position,
                    unsupported=unsupported_reason(entry),
                )
                report["accepted" if accept else "held_new"].append(name)
            else:
                reason = unsupported_reason(entry)
                if row.position != position or row.unsupported != reason:
                    row.position, row.unsupported = position, reason
                    moved.append(row)
                outcome = _tool_update(row, definition, fingerprint)
                if outcome:
                    report[outcome].append(name)
        # One statement for the common case (nothing changed) rather than a save per tool.
        Tool.objects.filter(server=server, name__in=seen).update(last_seen_at=now)
        if moved:  # reordered (the catalog follows the server's order), or its task support changed
            Tool.objects.bulk_update(moved, ["position", "unsupported"])
        for name, row in rows.items():
            if name not in seen and row.present:
                row.present = False
                row.save(update_fields=["present", "last_updated"])
                report["gone"].append(name)
        if moved or any(report.values()):
            revision.bump()  # bulk writes send no signals; one token for the whole sync (batched)
        waiting = Counter(
            Tool.objects.filter(server=server, present=True)
            .exclude(review=ToolReview.ACTIVE)
            .values_list("review", flat=True)
        )
    result = SyncReport(
        **{k: tuple(v) for k, v in report.items()},
        waiting_new=waiting[ToolReview.HELD_NEW],
        waiting_changed=waiting[ToolReview.HELD_CHANGED],
    )
    if result.held_new or result.held_changed:
        logger.warning(
            "mcp tools held for review",
            extra={"server": server.name, "new": result.held_new, "changed": result.held_changed},
        )
    return result


def _tool_create(
    server: MCPServer,
    name: str,
    definition: dict[str, Any],
    fingerprint: str,
    *,
    accept: bool,
    now: datetime,
    position: int,
    unsupported: str,
) -> Tool:
    fields: dict[str, Any] = {
        "server": server,
        "name": name,
        "last_seen_at": now,
        "position": position,
        "unsupported": unsupported,
    }
    if accept:
        fields |= accepted_fields(definition, fingerprint)
    else:
        fields |= {
            "review": ToolReview.HELD_NEW,
            "pending_definition": definition,
            "pending_fingerprint": fingerprint,
            "held_at": now,
        }
    # Another server's sync may take the same name between the check and the insert: the unique
    # index decides, and this tool moves on to the next candidate name.
    for public_name in _candidate_names(server.name, name, taken=_name_taken):
        try:
            with transaction.atomic():
                return Tool.objects.create(public_name=public_name, **fields)
        except IntegrityError:
            if Tool.objects.filter(server=server, name=name).exists():
                raise
            continue
    raise IntegrityError(f"no free public name for {name!r} of {server.name!r}")  # pragma: no cover


def _tool_update(row: Tool, definition: dict[str, Any], fingerprint: str) -> str:
    """Apply a rediscovered definition to ``row`` (saved only when it changes).

    Returns the report bucket the tool belongs in, or "" when nothing changed.
    """
    outcome = ""
    if not row.present:
        row.present = True
        outcome = "returned"
    if row.review == ToolReview.HELD_NEW:
        if fingerprint != row.pending_fingerprint:  # still new, and different again: show the latest
            _hold(row, ToolReview.HELD_NEW, definition, fingerprint)
            outcome = outcome or "held_new"
    elif fingerprint == row.fingerprint:
        if row.review == ToolReview.HELD_CHANGED:
            # The server went back to the accepted definition: nothing is left to review.
            row.review, row.pending_definition, row.pending_fingerprint, row.held_at = (
                ToolReview.ACTIVE,
                None,
                "",
                None,
            )
            outcome = outcome or "returned"
    elif fingerprint != row.pending_fingerprint:
        _hold(row, ToolReview.HELD_CHANGED, definition, fingerprint)
        outcome = "held_changed"
    if outcome:
        row.save()
    return outcome


def _hold(row: Tool, review: str, definition: dict[str, Any], fingerprint: str) -> None:
    row.review = review
    row.pending_definition, row.pending_fingerprint = definition, fingerprint
    row.held_at = timezone.now()
    row.reviewed_at, row.reviewed_by = None, None  # a new definition needs a new look


def accepted_fields(definition: dict[str, Any], fingerprint: str) -> dict[str, Any]:
    """The row fields that make ``definition`` the accepted one (here and in registry.tool_review)."""
    return {
        "title": (definition.get("title") or "")[:500],
        "description": definition.get("description") or "",
        "input_schema": definition.get("input_schema") or {},
        "output_schema": definition.get("output_schema"),
        "annotations": definition.get("annotations") or {},
        "fingerprint": fingerprint,
        "review": ToolReview.ACTIVE,
        "pending_definition": None,
        "pending_fingerprint": "",
        "held_at": None,
    }


def _name_taken(name: str) -> bool:
    return name in builtin_tool_names() or Tool.objects.filter(public_name=name).exists()


def _candidate_names(server: str, name: str, *, taken: Callable[[str], bool]) -> list[str]:
    """Free names in order of preference: plain, ``<server>__<name>``, then numbered variants."""
    candidates = [safe_name(name), namespaced_name(server, name)]
    candidates += [safe_name(f"{candidates[1]}_{n}") for n in range(2, 50)]
    free = [c for c in dict.fromkeys(candidates) if not taken(c)]
    return free
