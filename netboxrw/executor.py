"""Applying an approved plan: drift check, ordered writes in bulk, rollback on failure.

1. Drift: every object the plan updates or deletes is re-read (in bulk); if its ``last_updated``
   moved since planning -> conflict, nothing written. Every object the plan creates is looked up by
   its key; if one exists now -> conflict. Updates and deletes also send ``If-Match`` themselves.
2. Writes run in plan order; consecutive creates of one endpoint go as one bulk POST (atomic in
   NetBox). ``{"$ref": ...}`` values are replaced by the ids just created.
3. If a step fails, what this change created is deleted (newest first) and what it updated is
   patched back, then the change is ``failed`` with NetBox's error.
Every write carries a changelog message naming the change request and its approver.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from netboxrw.client import NetBoxClient, NetBoxError
from netboxrw.planner import Desired, Planner, key_tuple
from netboxrw.plans import Operation, Plan

logger = logging.getLogger("netboxrw.writes")

Outcome = Literal["applied", "conflict", "failed"]
BULK = 500  # objects per bulk request at most
FIRST_BULK = 100  # the first bulk request of an object type, before its cost is known
MIN_BULK = 20
# Seconds one bulk request should take. NetBox's gunicorn kills a worker after 120 s by default
# (its sample config; the request then fails with a 500 and is rolled back), and 500 cables or
# devices can take longer than that on a loaded server, so requests are sized by measured cost.
BULK_SECONDS = 20.0


class Journal(Protocol):
    """Where the executor records each write before it is sent and once NetBox answered.

    Steps are numbered from 0 in the order they are written. ``netboxrw.journal`` keeps them in
    the database so that a crashed worker's change can be finished or rolled back by another.
    """

    def before_write(self, seq: int, batch: list[Operation], payload: list[dict[str, Any]]) -> None: ...

    def after_write(self, seq: int, batch: list[Operation], object_ids: list[int]) -> None: ...

    def progress(self, done: int, total: int) -> None: ...


@dataclass
class JournalRecord:
    """One journalled step as read back for recovery (``state``: intent, written or undone)."""

    seq: int
    action: str
    endpoint: str
    operations: list[dict[str, Any]]
    object_ids: list[int]
    state: str


class NoJournal:
    """For callers that apply in one go and need no crash recovery (the seeder, dry runs)."""

    def before_write(self, seq: int, batch: list[Operation], payload: list[dict[str, Any]]) -> None:
        return None

    def after_write(self, seq: int, batch: list[Operation], object_ids: list[int]) -> None:
        return None

    def progress(self, done: int, total: int) -> None:
        return None


@dataclass
class ApplyResult:
    outcome: Outcome
    message: str = ""
    objects: list[dict[str, Any]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    rolled_back: list[str] = field(default_factory=list)
    duration_ms: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "message": self.message,
            "objects": self.objects,
            "conflicts": self.conflicts,
            "rolled_back": self.rolled_back,
            "duration_ms": round(self.duration_ms, 1),
        }


class Executor:
    """Applies one plan through ``client``; ``log_context`` goes into every write log line."""

    def __init__(
        self,
        client: NetBoxClient,
        *,
        message: str,
        log_context: dict[str, Any],
        dry_run: bool = False,
        bulk_updates: bool = False,
        journal: Journal | None = None,
    ) -> None:
        """``bulk_updates``: consecutive updates of one endpoint in one PATCH, protected by the
        drift check only (bulk PATCH takes no ``If-Match``); for the seeder, not for reviewed changes."""
        self.client = client
        self.bulk_updates = bulk_updates
        self.message = message
        self.context = log_context
        self.dry_run = dry_run
        self.journal: Journal = journal or NoJournal()
        self.ids: dict[str, int] = {}
        self.created: list[tuple[str, int, str]] = []
        self.updated: list[tuple[Operation, dict[str, Any]]] = []

    def apply(self, plan: Plan) -> ApplyResult:
        started = time.perf_counter()
        conflicts = self.drift(plan)
        if conflicts:
            return ApplyResult(
                "conflict", "NetBox changed since the plan was made; re-plan", conflicts=conflicts
            )
        if self.dry_run:
            for op in plan.operations:
                self._log(op, "dry-run", op.data)
            return ApplyResult(
                "applied", "dry run: logged, nothing sent", duration_ms=(time.perf_counter() - started) * 1000
            )
        objects: list[dict[str, Any]] = []
        sizer = BatchSizer()
        total = len(plan.operations)
        self.journal.progress(0, total)
        try:
            for seq, batch in enumerate(sizer.batches(plan.operations, bulk_updates=self.bulk_updates)):
                objects += self._run(seq, batch)
                self.journal.progress(len(objects), total)
        except NetBoxError as exc:
            rolled_back = self.rollback()
            return ApplyResult(
                "failed",
                str(exc),
                objects=objects,
                rolled_back=rolled_back,
                duration_ms=(time.perf_counter() - started) * 1000,
            )
        return ApplyResult(
            "applied", "applied", objects=objects, duration_ms=(time.perf_counter() - started) * 1000
        )

    # --- drift -----------------------------------------------------------------------------------

    def drift(self, plan: Plan) -> list[str]:
        """What changed in NetBox since planning (empty: safe to apply)."""
        problems: list[str] = []
        by_endpoint: dict[str, list[Operation]] = {}
        for op in plan.operations:
            if op.action in ("update", "delete"):
                by_endpoint.setdefault(op.endpoint, []).append(op)
        for endpoint, ops in by_endpoint.items():
            current: dict[int, dict[str, Any]] = {}
            for start in range(0, len(ops), 100):
                chunk = [op.id for op in ops[start : start + 100] if op.id is not None]
                for obj in self.client.fetch_all(endpoint, {"id": chunk}, fields=["id", "last_updated"]):
                    current[obj["id"]] = obj
            for op in ops:
                if op.id is None:  # an object this plan creates first (updated by ref)
                    continue
                now = current.get(op.id)
                if now is None:
                    problems.append(f"{op.display} ({endpoint} #{op.id}) was deleted in NetBox")
                elif now.get("last_updated") != op.last_updated:
                    problems.append(
                        f"{op.display} ({endpoint} #{op.id}) was edited in NetBox at {now.get('last_updated')}"
                    )
        creates: dict[str, list[Operation]] = {}
        for op in plan.operations:
            if (
                op.action == "create"
                and op.lookup
                and not any(isinstance(v, dict) for v in op.lookup.values())
            ):
                creates.setdefault(op.endpoint, []).append(op)
        for endpoint, ops in creates.items():  # the same bulk reads as planning
            existing = Planner(self.client).existing(
                endpoint, [Desired(endpoint, op.lookup, {}) for op in ops]
            )
            problems += [
                f"{op.display} ({endpoint}) now exists in NetBox"
                for op in ops
                if key_tuple(endpoint, op.lookup) in existing
            ]
        return problems

    # --- writes ----------------------------------------------------------------------------------

    def _run(self, seq: int, batch: list[Operation]) -> list[dict[str, Any]]:
        first = batch[0]
        if first.action == "create":
            payload = [self._bound(op.data) for op in batch]
            self.journal.before_write(seq, batch, payload)
            created = (
                self.client.bulk_create(first.endpoint, payload, message=self.message)
                if len(batch) > 1
                else [self.client.create(first.endpoint, payload[0], message=self.message)]
            )
            self.journal.after_write(seq, batch, [obj["id"] for obj in created])
            for op, data, obj in zip(batch, payload, created, strict=True):
                self.created.append((op.endpoint, obj["id"], op.display))
                if op.ref:
                    self.ids[op.ref] = obj["id"]
                self._log(op, "created", data, obj["id"])
            return [
                {
                    "action": "create",
                    "object_type": first.endpoint,
                    "id": o["id"],
                    "display": o.get("display"),
                }
                for o in created
            ]
        if first.action == "update" and len(batch) > 1:
            return self._bulk_update(seq, batch)
        op = first
        if op.action == "update":
            object_id = op.id if op.id is not None else self.ids[op.ref or ""]
            data = self._bound(op.data)
            self.journal.before_write(seq, batch, [{"id": object_id, **data}])
            obj = self.client.update(op.endpoint, object_id, data, etag=op.etag, message=self.message)
            self.journal.after_write(seq, batch, [object_id])
            if op.id is not None:  # created by this plan: undone by deleting it
                self.updated.append((op, obj))
            if op.ref:
                self.ids[op.ref] = object_id
            self._log(op, "updated", data, object_id)
            return [
                {
                    "action": "update",
                    "object_type": op.endpoint,
                    "id": object_id,
                    "display": obj.get("display"),
                }
            ]
        assert op.id is not None
        self.journal.before_write(seq, batch, [{"id": op.id}])
        self.client.delete(op.endpoint, op.id, etag=op.etag, message=self.message)
        self.journal.after_write(seq, batch, [op.id])
        self._log(op, "deleted", {}, op.id)
        return [{"action": "delete", "object_type": op.endpoint, "id": op.id, "display": op.display}]

    def _bulk_update(self, seq: int, batch: list[Operation]) -> list[dict[str, Any]]:
        items = [{"id": op.id, **self._bound(op.data)} for op in batch]
        self.journal.before_write(seq, batch, items)
        updated = self.client.bulk_update(batch[0].endpoint, items, message=self.message)
        self.journal.after_write(seq, batch, [int(item["id"]) for item in items])
        for op, item, obj in zip(batch, items, updated, strict=True):
            self.updated.append((op, obj))
            if op.ref and op.id is not None:
                self.ids[op.ref] = op.id
            self._log(op, "updated", item, op.id)
        return [
            {"action": "update", "object_type": op.endpoint, "id": op.id, "display": obj.get("display")}
            for op, obj in zip(batch, updated, strict=True)
        ]

    def _bound(self, data: dict[str, Any]) -> dict[str, Any]:
        return {name: self._bound_value(value) for name, value in data.items()}

    def _bound_value(self, value: Any) -> Any:
        """``{"$ref": r}`` as the id created for ``r``, also inside lists and dicts."""
        if isinstance(value, dict):
            if "$ref" in value:
                return self.ids[value["$ref"]]
            return {k: self._bound_value(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._bound_value(v) for v in value]
        return value

    def rollback(self) -> list[str]:
        """Undo this change's own writes, newest first; report what was undone (or could not be)."""
        undone: list[str] = []
        for op, _ in reversed(self.updated):
            try:
                self.client.update(
                    op.endpoint, op.id or 0, op.before or {}, message=f"{self.message} (rollback)"
                )
                undone.append(f"restored {op.display}")
            except NetBoxError as exc:
                undone.append(f"could not restore {op.display}: {exc}")
        for endpoint, object_id, display in reversed(self.created):
            try:
                self.client.delete(endpoint, object_id, message=f"{self.message} (rollback)")
                undone.append(f"deleted {display}")
            except NetBoxError as exc:
                if exc.status != 404:  # already gone with its parent (interfaces with their device)
                    undone.append(f"could not delete {display}: {exc}")
        return undone

    def _log(self, op: Operation, result: str, data: dict[str, Any], object_id: int | None = None) -> None:
        logger.info(
            "netbox write",
            extra={
                **self.context,
                "action": op.action,
                "object_type": op.endpoint,
                "object": op.display,
                "object_id": object_id,
                "data": data,
                "result": result,
            },
        )


class BatchSizer:
    """Cuts operations into bulk requests of about :data:`BULK_SECONDS` each, per object type.

    The first request of a type has :data:`FIRST_BULK` objects; each request's time per object
    sizes the next one of that type (between :data:`MIN_BULK` and :data:`BULK`).
    """

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}

    def batches(
        self, operations: list[Operation], *, bulk_updates: bool = False
    ) -> Iterator[list[Operation]]:
        """Batches as :func:`batches` makes them, sized as they go (the caller runs each in turn)."""
        start = 0
        while start < len(operations):
            endpoint = operations[start].endpoint
            batch = batches(operations[start : start + self.size(endpoint)], bulk_updates=bulk_updates)[0]
            started = time.perf_counter()
            yield batch
            self.observe(endpoint, len(batch), time.perf_counter() - started)
            start += len(batch)

    def size(self, endpoint: str) -> int:
        return self.sizes.get(endpoint, FIRST_BULK)

    def observe(self, endpoint: str, count: int, seconds: float) -> None:
        if count > 1 or endpoint not in self.sizes:
            per_object = max(seconds / count, 1e-4)
            self.sizes[endpoint] = max(MIN_BULK, min(BULK, int(BULK_SECONDS / per_object)))


def batches(operations: list[Operation], *, bulk_updates: bool = False) -> list[list[Operation]]:
    """Consecutive creates of one endpoint together (bulk POST); with ``bulk_updates`` also
    consecutive updates of existing objects of one endpoint (bulk PATCH); the rest one by one.

    A create pointing at an object of the batch being built (a child region at its parent) starts
    a new batch: the ids of a bulk POST are only known once it returns.
    """
    grouped: list[list[Operation]] = []
    refs: set[str] = set()
    for op in operations:
        last = grouped[-1] if grouped else None
        if (
            last
            and op.action == "create"
            and last[0].action == "create"
            and last[0].endpoint == op.endpoint
            and len(last) < BULK
            and not (_refs_in(op.data) & refs)
        ) or (
            bulk_updates
            and last
            and op.action == last[0].action == "update"
            and op.id is not None
            and last[0].id is not None
            and last[0].endpoint == op.endpoint
            and len(last) < BULK
            and not (_refs_in(op.data) & refs)
        ):
            last.append(op)
        else:
            grouped.append([op])
            refs = set()
        if op.ref:
            refs.add(op.ref)
    return grouped


def _refs_in(value: Any) -> set[str]:
    if isinstance(value, dict):
        if "$ref" in value:
            return {value["$ref"]}
        return set().union(*(_refs_in(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_refs_in(v) for v in value))
    return set()


# --- recovery from a journal ---------------------------------------------------------------------


def _bind(value: Any, ids: dict[str, int]) -> Any:
    if isinstance(value, dict):
        if "$ref" in value:
            return ids.get(value["$ref"], value)
        return {k: _bind(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_bind(v, ids) for v in value]
    return value


def _known_ids(steps: list[JournalRecord]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for step in steps:
        if step.state != "intent":
            for op, object_id in zip(step.operations, step.object_ids, strict=False):
                if op.get("ref"):
                    ids[op["ref"]] = object_id
    return ids


def _intent_targets(
    client: NetBoxClient, step: JournalRecord, ids: dict[str, int]
) -> list[tuple[dict[str, Any], int]]:
    """The objects an ``intent`` step may have written: NetBox is asked, the journal cannot know."""
    ops = step.operations
    if step.action == "create":
        lookups = [op for op in ops if op.get("lookup")]
        if not lookups:
            return []
        bound = [_bind(op["lookup"], ids) for op in lookups]
        found = Planner(client).existing(step.endpoint, [Desired(step.endpoint, key, {}) for key in bound])
        targets = []
        for op, key in zip(lookups, bound, strict=True):
            obj = found.get(key_tuple(step.endpoint, key))
            if obj is not None:
                targets.append((op, int(obj["id"])))
        return targets
    if step.action == "update":
        return [(op, op["id"]) for op in ops if op.get("id") is not None]
    gone = []
    for op in ops:  # a delete happened if the object is not there any more
        try:
            client.get(step.endpoint, op["id"])
        except NetBoxError as exc:
            if exc.status != 404:
                raise
            gone.append((op, op["id"]))
    return gone


def rollback_journal(
    client: NetBoxClient, records: list[JournalRecord], *, message: str, on_undone: Callable[[int], None]
) -> list[str]:
    """Undo a crashed apply from its journal, newest step first; lines saying what was done.

    Objects created are deleted, updated objects are patched back to the state read at planning,
    deleted objects are created again from that state. An ``intent`` step's outcome is unknown, so
    NetBox is asked (creates are looked up by their key, deletes by id). Raises
    :class:`NetBoxError` when NetBox cannot be reached: steps already undone stay undone.
    """
    records = sorted(records, key=lambda record: record.seq)
    ids = _known_ids(records)
    lines: list[str] = []
    for record in reversed(records):
        if record.state == "undone":
            continue
        if record.state == "written":
            targets = list(zip(record.operations, record.object_ids, strict=False))
        else:
            targets = _intent_targets(client, record, ids)
        for op, object_id in reversed(targets):
            lines.append(_undo(client, record.action, record.endpoint, op, object_id, message))
        on_undone(record.seq)
    return lines


def _undo(
    client: NetBoxClient, action: str, endpoint: str, op: dict[str, Any], object_id: int, message: str
) -> str:
    display = op.get("display") or f"{endpoint} #{object_id}"
    if action == "create" or (action == "update" and op.get("id") is None):
        try:
            client.delete(endpoint, object_id, message=message)
        except NetBoxError as exc:
            if exc.status != 404:  # already gone with its parent (interfaces with their device)
                raise
        return f"deleted {display}"
    before = {k: v for k, v in (op.get("before") or {}).items()}
    if action == "update":
        client.update(endpoint, object_id, before, message=message)
        return f"restored {display}"
    data = {k: v for k, v in before.items() if v is not None}
    created = client.create(endpoint, data, message=message)
    return f"created {display} again (now #{created['id']})"
