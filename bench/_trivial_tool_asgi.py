"""netops' ASGI application plus one trivial built-in tool, for the daphne child of a bench.

``bench_ping`` answers at once in-process (no network hop, no database), so a gateway call of it
measures netops' own cost per request: routing, middleware, admission (key, rate limit), catalog,
argument validation, audit. Run as ``daphne bench._trivial_tool_asgi:application``.
"""

from __future__ import annotations

from typing import Any

from netops.asgi import application as application
from registry.catalog import BuiltinProvider, BuiltinTool, CallContext, register_provider

PING_SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "additionalProperties": False}


async def _ping(arguments: dict[str, Any], context: CallContext) -> dict[str, Any]:
    return {"pong": arguments.get("n", 0)}


register_provider(
    BuiltinProvider(
        "bench",
        lambda: [
            BuiltinTool(
                "bench_ping", "Answer at once.", PING_SCHEMA, _ping, annotations={"readOnlyHint": True}
            )
        ],
    )
)
