"""Desired state -> plan, reading NetBox in bulk.

Callers describe the objects they want (:class:`Desired`: an endpoint, its natural key, its fields,
and references to other desired objects). The planner reads the existing objects of each endpoint
with a few multi-value list requests (never one request per object), then emits only the creates
and updates that make NetBox match — nothing when it already does, which is what makes every write
tool idempotent. The demo-data seeder uses the same code.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from netboxrw.client import NetBoxClient
from netboxrw.plans import Operation, comparable, create_op, update_op

# How a natural-key field is filtered on: foreign keys by id.
FOREIGN_KEYS = {
    "site": "site_id",
    "device": "device_id",
    "region": "region_id",
    "group": "group_id",
    "manufacturer": "manufacturer_id",
    "vrf": "vrf_id",
    "tenant": "tenant_id",
    "parent": "parent_id",
}
# Endpoints whose objects are found through a field of another endpoint: a cable by the interface
# it starts at (interfaces carry ``cable``; cables cannot be filtered by their terminations).
FOUND_VIA = {"dcim/cables": ("dcim/interfaces", "cable")}
CHUNK = 100  # values per multi-value filter: keeps URLs short


@dataclass(frozen=True)
class Ref:
    """A pointer to another desired object by its ``ref`` (resolved to an id, or created first)."""

    ref: str


@dataclass
class Desired:
    """One object as it should be. ``key`` identifies it (values may be :class:`Ref`)."""

    endpoint: str
    key: dict[str, Any]
    data: dict[str, Any]
    ref: str | None = None
    display: str = ""
    shown: dict[str, Any] = field(default_factory=dict)
    create_only: bool = False  # when it exists, leave it as it is (cables: found, never compared)


class Planner:
    """Plans a list of desired objects; ``ids`` maps refs to existing ids (None: created by the plan)."""

    def __init__(self, client: NetBoxClient) -> None:
        self.client = client
        self.ids: dict[str, int | None] = {}

    def plan(self, desired: Sequence[Desired]) -> list[Operation]:
        operations: list[Operation] = []
        for endpoint, group in _grouped(desired):
            existing = self.existing(endpoint, group)
            for item in group:
                key = self._resolve(item.key)
                data = self._resolve(item.data)
                current = None if _pending(key) else existing.get(key_tuple(endpoint, key))
                display = item.display or _display(key)
                if current is None:
                    operations.append(
                        create_op(endpoint, display, data, ref=item.ref, lookup=key, shown=item.shown)
                    )
                    if item.ref:
                        self.ids[item.ref] = None
                    continue
                if item.ref:
                    self.ids[item.ref] = current["id"]
                if item.create_only:
                    continue
                op = update_op(endpoint, current, data, display, shown=item.shown)
                if op is not None:
                    op.ref = item.ref
                    operations.append(op)
        return operations

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` with every :class:`Ref` as a known id or ``{"$ref": r}`` (created by the plan)."""
        return self._resolve(values)

    def _resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        return {name: self._resolve_value(name, value) for name, value in values.items()}

    def _resolve_value(self, name: str, value: Any) -> Any:
        """A :class:`Ref` (also inside lists and dicts: cable terminations) as an id or ``{"$ref": r}``."""
        if isinstance(value, Ref):
            if value.ref not in self.ids:
                raise ValueError(f"{name} refers to {value.ref!r}, which is not planned before it")
            known = self.ids[value.ref]
            return known if known is not None else {"$ref": value.ref}
        if isinstance(value, list):
            return [self._resolve_value(name, v) for v in value]
        if isinstance(value, dict):
            return {k: self._resolve_value(name, v) for k, v in value.items()}
        return value

    def existing(self, endpoint: str, group: list[Desired]) -> dict[tuple[Any, ...], dict[str, Any]]:
        """Existing objects of ``endpoint`` that any item of ``group`` could be, by key tuple."""
        keys = [self._resolve(item.key) for item in group]
        keys = [key for key in keys if not _pending(key)]
        if not keys:
            return {}
        fields = list(keys[0])
        if endpoint in FOUND_VIA:
            return self._existing_via(endpoint, fields[0], keys)
        foreign = [f for f in fields if f in FOREIGN_KEYS]
        # Filter on the foreign keys when there are any (an interface by device), else on every key field.
        filter_fields = foreign or fields
        found: dict[tuple[Any, ...], dict[str, Any]] = {}
        if len(filter_fields) == 1:
            name = filter_fields[0]
            values = sorted({str(key[name]) for key in keys})
            for chunk in _chunks(values, CHUNK):
                for obj in self.client.fetch_all(endpoint, {FOREIGN_KEYS.get(name, name): chunk}):
                    found[key_tuple(endpoint, obj, fields)] = obj
        else:
            combos = sorted({tuple(str(key[f]) for f in filter_fields) for key in keys})
            for combo in combos:
                filters = {FOREIGN_KEYS.get(f, f): v for f, v in zip(filter_fields, combo, strict=True)}
                for obj in self.client.fetch_all(endpoint, filters):
                    found[key_tuple(endpoint, obj, fields)] = obj
        return found

    def _existing_via(
        self, endpoint: str, name: str, keys: list[dict[str, Any]]
    ) -> dict[tuple[Any, ...], dict[str, Any]]:
        """Objects keyed by the id of another endpoint's object that points at them (cables)."""
        via, attribute = FOUND_VIA[endpoint]
        found: dict[tuple[Any, ...], dict[str, Any]] = {}
        values = sorted({str(key[name]) for key in keys})
        for chunk in _chunks(values, CHUNK):
            for obj in self.client.fetch_all(via, {"id": chunk}, fields=["id", attribute]):
                if obj.get(attribute):
                    found[(endpoint, str(obj["id"]))] = {"id": comparable(obj[attribute])}
        return found


def _grouped(desired: Iterable[Desired]) -> list[tuple[str, list[Desired]]]:
    """Consecutive runs of the same endpoint, in the given (dependency) order."""
    groups: list[tuple[str, list[Desired]]] = []
    for item in desired:
        if groups and groups[-1][0] == item.endpoint:
            groups[-1][1].append(item)
        else:
            groups.append((item.endpoint, [item]))
    return groups


def _pending(key: dict[str, Any]) -> bool:
    return any(isinstance(v, dict) and "$ref" in v for v in key.values())


def key_tuple(endpoint: str, obj: dict[str, Any], fields: list[str] | None = None) -> tuple[Any, ...]:
    names = fields if fields is not None else list(obj)
    return (endpoint, *(str(comparable(obj.get(name))) for name in names))


def _display(key: dict[str, Any]) -> str:
    return " ".join(str(v) for v in key.values() if not isinstance(v, dict))


def _chunks(values: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
