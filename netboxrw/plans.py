"""Plans: the exact NetBox operations a change would perform, with a field-level diff.

A plan is plain JSON (stored in :class:`netboxrw.models.ChangeRequest.plan`). Operations run in
order; a later operation may point at an object an earlier one creates with ``{"$ref": "<ref>"}``.
Updates and deletes carry ``last_updated`` as read while planning: the executor refuses to write
when NetBox's copy is newer (drift), and sends it as ``If-Match`` on the write itself.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Action = Literal["create", "update", "delete"]


@dataclass
class FieldChange:
    field: str
    before: Any
    after: Any


@dataclass
class Operation:
    """One write: create ``data``; update ``id`` with ``data`` (changed fields only); delete ``id``."""

    action: Action
    endpoint: str
    display: str
    data: dict[str, Any] = field(default_factory=dict)
    id: int | None = None
    last_updated: str | None = None
    ref: str | None = None
    lookup: dict[str, Any] = field(default_factory=dict)
    before: dict[str, Any] | None = None
    changes: list[FieldChange] = field(default_factory=list)

    @property
    def etag(self) -> str | None:
        """NetBox's weak ETag for the version read (``W/"<last_updated>"``)."""
        if not self.last_updated:
            return None
        return 'W/"' + self.last_updated.replace("Z", "+00:00") + '"'


@dataclass
class Plan:
    """What a write tool would do; ``operations`` empty means the desired state already holds."""

    tool: str
    summary: str
    operations: list[Operation] = field(default_factory=list)

    @property
    def is_noop(self) -> bool:
        return not self.operations

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for op in self.operations:
            counts[op.action] = counts.get(op.action, 0) + 1
        return counts

    def object_types(self) -> list[str]:
        return sorted({op.endpoint for op in self.operations})

    def diff(self) -> list[dict[str, Any]]:
        """Per object: action, type, name and the changed fields (what reviewers read)."""
        return [
            {
                "step": index + 1,
                "action": op.action,
                "object_type": op.endpoint,
                "object": op.display,
                "id": op.id,
                "changes": [asdict(c) for c in op.changes],
            }
            for index, op in enumerate(self.operations)
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "tool": self.tool,
            "summary": self.summary,
            "operations": [asdict(op) for op in self.operations],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Plan:
        operations = []
        for raw in data["operations"]:
            values = dict(raw)
            values["changes"] = [FieldChange(**c) for c in values.get("changes", [])]
            operations.append(Operation(**values))
        return cls(tool=data["tool"], summary=data["summary"], operations=operations)


def create_op(
    endpoint: str,
    display: str,
    data: dict[str, Any],
    *,
    ref: str | None = None,
    lookup: dict[str, Any] | None = None,
    shown: dict[str, Any] | None = None,
) -> Operation:
    """A create, with every field shown as new in the diff (``shown``: reviewer-friendly values)."""
    changes = [
        FieldChange(name, None, (shown or {}).get(name, shown_value(value))) for name, value in data.items()
    ]
    return Operation("create", endpoint, display, data=data, ref=ref, lookup=lookup or {}, changes=changes)


def pending_update_op(endpoint: str, display: str, data: dict[str, Any], *, ref: str) -> Operation:
    """An update of an object the same plan creates first: found by ``ref`` when applied, every
    field shown as new (there is no stored version to compare with or to send ``If-Match`` for)."""
    changes = [FieldChange(name, None, shown_value(value)) for name, value in data.items()]
    return Operation("update", endpoint, display, data=data, ref=ref, changes=changes)


def update_op(
    endpoint: str,
    current: dict[str, Any],
    desired: dict[str, Any],
    display: str,
    shown: dict[str, Any] | None = None,
) -> Operation | None:
    """An update of only the fields that differ (None when nothing differs: idempotent)."""
    changes, data = [], {}
    for name, value in desired.items():
        before = comparable(current.get(name))
        if before != value:
            changes.append(
                FieldChange(name, shown_value(current.get(name)), (shown or {}).get(name, shown_value(value)))
            )
            data[name] = value
    if not data:
        return None
    return Operation(
        "update",
        endpoint,
        display,
        data=data,
        id=current["id"],
        last_updated=current.get("last_updated"),
        before={name: comparable(current.get(name)) for name in data},
        changes=changes,
    )


def delete_op(endpoint: str, current: dict[str, Any], display: str, shown_fields: list[str]) -> Operation:
    changes = [
        FieldChange(name, shown_value(current.get(name)), None)
        for name in shown_fields
        if current.get(name) is not None
    ]
    return Operation(
        "delete",
        endpoint,
        display,
        id=current["id"],
        last_updated=current.get("last_updated"),
        before={name: comparable(current.get(name)) for name in shown_fields},
        changes=changes,
    )


def comparable(value: Any) -> Any:
    """NetBox's nested read values in the shape writes take: ``{"id": 3, ...}`` -> 3, choices -> value."""
    if isinstance(value, dict):
        if "value" in value and "label" in value:
            return value["value"]
        if "id" in value:
            return value["id"]
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def shown_value(value: Any) -> Any:
    """A value as a reviewer reads it: nested objects by their display name, objects this change
    creates first by their reference (``region:NAM (new)``), cable ends by type and object."""
    if isinstance(value, dict):
        if "$ref" in value:
            return f"{value['$ref']} (new)"
        if "object_type" in value and "object_id" in value:
            return f"{value['object_type']} {shown_value(value['object_id'])}"
        if "label" in value:
            return value["label"]
        if "display" in value:
            return value["display"]
    if isinstance(value, list):
        return [shown_value(v) for v in value]
    return value
