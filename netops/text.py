"""Text that every store and encoder of netops can take: no NUL, no lone surrogate.

PostgreSQL refuses NUL (U+0000) in ``text`` and ``jsonb`` columns, and a lone surrogate (``"\\udcff"``,
which ``json.loads`` happily decodes) cannot be encoded as UTF-8 for the database, a log line or a
response. Input from people is refused where it enters (:mod:`netops.input_guard`); text that netops
must keep although it came from elsewhere (an LLM's chosen tool arguments, a tool's result) is
cleaned with :func:`clean_text` / :func:`json_safe` instead, so one bad character never costs the rest.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

REPLACEMENT = "\ufffd"
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text ("contains a NUL character", ...), or None when it can."""
    found = _UNSTORABLE.search(value)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL character (U+0000), which text may not contain"
    return f"contains a lone surrogate (U+{ord(found.group()):04X}), which is not valid Unicode text"


def clean_text(value: str) -> str:
    """``value`` with every NUL and lone surrogate replaced by U+FFFD (the rest kept as it is)."""
    return _UNSTORABLE.sub(REPLACEMENT, value)


def json_safe(value: Any) -> Any:
    """A copy of a JSON-like value whose strings (keys too) are :func:`clean_text`-ed.

    Iterative, like :func:`walk`: any depth the JSON decoder produced is copied without recursion.
    """
    root: list[Any] = [None]
    # (container to fill, key or index in it, value to copy)
    stack: list[tuple[Any, Any, Any]] = [(root, 0, value)]
    while stack:
        target, slot, node = stack.pop()
        if isinstance(node, str):
            target[slot] = clean_text(node)
        elif isinstance(node, dict):
            copy: dict[str, Any] = {}
            target[slot] = copy
            for key, item in node.items():
                cleaned = clean_text(str(key))
                copy[cleaned] = None
                stack.append((copy, cleaned, item))
        elif isinstance(node, list | tuple):
            items: list[Any] = [None] * len(node)
            target[slot] = items
            stack.extend((items, index, item) for index, item in enumerate(node))
        else:
            target[slot] = node
    return root[0]


def json_path(parts: Any) -> str:
    """``["items", 2, "name"]`` -> ``items[2].name`` (the way error messages name a place in JSON)."""
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


Link = tuple[Any, Any] | None  # (parent link, key or index): a path shared by siblings, built in O(1)


def path_of(link: Link) -> list[Any]:
    """The path (keys and indexes from the top) that a :func:`walk` link stands for."""
    parts: list[Any] = []
    while link is not None:
        link, part = link
        parts.append(part)
    return parts[::-1]


def walk(value: Any) -> Iterator[tuple[int, Link, Any, bool]]:
    """Every node of a JSON-like value, depth first and without recursion: ``(depth, link, node, is_key)``.

    Iterative so that a value nested a hundred thousand levels deep costs a loop, not the stack;
    the path is a link (see :func:`path_of`), so a wide value costs O(1) per node.
    """
    stack: list[tuple[int, Link, Any]] = [(0, None, value)]
    while stack:
        depth, link, node = stack.pop()
        yield depth, link, node, False
        if isinstance(node, dict):
            for key, item in node.items():
                child = (link, key)
                yield depth + 1, child, key, True
                stack.append((depth + 1, child, item))
        elif isinstance(node, list | tuple):
            stack.extend((depth + 1, (link, index), item) for index, item in enumerate(node))
