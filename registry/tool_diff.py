"""A readable diff of two tool definitions: pretty JSON per field, each line marked.

Imports no Django. The lines are plain text: templates escape them like any remote string.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any, Literal

FIELDS: tuple[tuple[str, str], ...] = (
    ("title", "Title"),
    ("description", "Description"),
    ("input_schema", "Input schema"),
    ("output_schema", "Output schema"),
    ("annotations", "Annotations"),
)

# A definition is bounded (the server's list is), but a diff page must stay readable.
MAX_LINES_PER_FIELD = 400

Mark = Literal["same", "added", "removed"]


@dataclass(frozen=True)
class DiffLine:
    mark: Mark
    text: str

    @property
    def sign(self) -> str:
        return {"same": " ", "added": "+", "removed": "-"}[self.mark]


@dataclass(frozen=True)
class FieldDiff:
    field: str
    label: str
    changed: bool
    lines: tuple[DiffLine, ...]
    truncated: bool = False


def _pretty(field: str, value: Any) -> list[str]:
    if value is None or value == "" or value == {}:
        return []
    if field in ("title", "description") and isinstance(value, str):
        return value.splitlines() or [""]
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str).splitlines()


def definition_diff(old: dict[str, Any] | None, new: dict[str, Any]) -> list[FieldDiff]:
    """Per field, the lines of ``old`` and ``new`` (``old`` None: a new tool, every line added)."""
    diffs: list[FieldDiff] = []
    for field, label in FIELDS:
        before_all = _pretty(field, (old or {}).get(field))
        after_all = _pretty(field, new.get(field))
        # Cut before diffing: line matching is quadratic at worst, and the text is a remote's.
        before, after = before_all[:MAX_LINES_PER_FIELD], after_all[:MAX_LINES_PER_FIELD]
        lines: list[DiffLine] = []
        matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op == "equal":
                lines += [DiffLine("same", text) for text in before[i1:i2]]
                continue
            lines += [DiffLine("removed", text) for text in before[i1:i2]]
            lines += [DiffLine("added", text) for text in after[j1:j2]]
        truncated = len(before_all) > len(before) or len(after_all) > len(after)
        diffs.append(
            FieldDiff(
                field=field,
                label=label,
                changed=before_all != after_all,
                lines=tuple(lines),
                truncated=truncated,
            )
        )
    return diffs
