"""How many tools one model request may carry, and what to deselect when a conversation offers more.

Django-free (the agent checks it too). OpenAI's chat completions take at most 128 function tools
(``LLM_MAX_TOOLS`` overrides); a request with more is rejected by the provider after the question
was already stored, so netops refuses before asking and names the servers to deselect instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX_TOOLS = 128


@dataclass(frozen=True)
class SourceCount:
    """The tools one source (a server, or a built-in provider) adds to the request."""

    source: str
    count: int
    builtin: bool


@dataclass(frozen=True)
class ToolBudget:
    """The conversation's tools against the limit; ``deselect`` is a smallest-by-count fix."""

    total: int
    limit: int
    sources: tuple[SourceCount, ...]
    deselect: tuple[SourceCount, ...]

    @property
    def exceeded(self) -> bool:
        return self.total > self.limit

    def message(self) -> str:
        """The sentence the page and the API show when the limit is exceeded ('' when it is not)."""
        if not self.exceeded:
            return ""
        servers = [s for s in self.sources if not s.builtin]
        listed = ", ".join(f"{s.source} ({s.count} tools)" for s in servers)
        advice = " and ".join(f"{s.source} ({s.count})" for s in self.deselect)
        fix = f" Deselecting {advice} would be enough." if advice else ""
        return (
            f"This conversation offers {self.total} tools but a model request takes at most {self.limit}. "
            f"Deselect tool servers in the Tools picker — selected: {listed}.{fix}"
        )


def tool_budget(tools: Sequence[Any], *, limit: int) -> ToolBudget:
    """Count ``tools`` (catalog tools: ``source``, ``source_kind``) per source against ``limit``."""
    counts: dict[str, SourceCount] = {}
    for tool in tools:
        current = counts.get(tool.source)
        builtin = getattr(tool, "source_kind", "server") == "builtin"
        counts[tool.source] = SourceCount(tool.source, (current.count if current else 0) + 1, builtin)
    sources = tuple(sorted(counts.values(), key=lambda s: (s.builtin is False, -s.count, s.source)))
    excess = len(tools) - limit
    deselect: list[SourceCount] = []
    if excess > 0:
        servers = sorted((s for s in sources if not s.builtin), key=lambda s: (-s.count, s.source))
        # One server that covers the excess on its own is the smallest change: the least tools lost.
        single = [s for s in servers if s.count >= excess]
        if single:
            deselect = [min(single, key=lambda s: (s.count, s.source))]
        else:
            for server in servers:
                deselect.append(server)
                excess -= server.count
                if excess <= 0:
                    break
            if excess > 0:
                deselect = []  # even every server off leaves too many built-in tools
    return ToolBudget(total=len(tools), limit=limit, sources=sources, deselect=tuple(deselect))


class TooManyTools(Exception):
    """The tool list is longer than a model request may carry; the message says what to deselect."""

    def __init__(self, budget: ToolBudget):
        super().__init__(budget.message())
        self.budget = budget
