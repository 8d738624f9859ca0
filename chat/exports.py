"""Transcript exports: JSON for machines, Markdown for people (tickets, post-mortems)."""

from __future__ import annotations

import json
from typing import Any

from django.utils.text import slugify

from chat.models import Conversation
from chat.selectors import messages_for

FORMAT_VERSION = 1


def as_dict(conversation: Conversation) -> dict[str, Any]:
    """Everything of a conversation: messages, their model, tool calls with arguments and results, citations."""
    return {
        "format": "netops.conversation",
        "version": FORMAT_VERSION,
        "id": str(conversation.pk),
        "title": conversation.title,
        "user": conversation.user.get_username(),
        "created": conversation.created.isoformat(),
        "updated": conversation.updated.isoformat(),
        "messages": [
            {
                "id": message.pk,
                "role": message.role,
                "content": message.content,
                "status": message.status,
                "error": message.error or None,
                "model": message.model_name or None,
                "created": message.created.isoformat(),
                "finished": message.finished.isoformat() if message.finished else None,
                "usage": {
                    "prompt_tokens": message.prompt_tokens,
                    "completion_tokens": message.completion_tokens,
                },
                "citations": message.citations,
                "tool_calls": [
                    {
                        "number": call.number,
                        "id": call.call_id,
                        "tool": call.name,
                        "source": call.source,
                        "arguments": call.arguments,
                        "is_error": call.is_error,
                        "duration_ms": call.duration_ms,
                        "content": call.content,
                        "structured_content": call.structured_content,
                    }
                    for call in message.tool_calls.all()
                ],
            }
            for message in messages_for(conversation)
        ],
    }


def as_json(conversation: Conversation) -> str:
    return json.dumps(as_dict(conversation), indent=2, ensure_ascii=False)


def as_markdown(conversation: Conversation) -> str:
    data = as_dict(conversation)
    lines = [
        f"# {data['title']}",
        "",
        f"Exported from netops · conversation `{data['id']}` · {data['user']} · created {data['created']}",
        "",
    ]
    for message in data["messages"]:
        lines += _message_markdown(message)
    return "\n".join(lines).rstrip() + "\n"


def _message_markdown(message: dict[str, Any]) -> list[str]:
    if message["role"] == "user":
        return [f"## You · {message['created']}", "", message["content"], ""]
    heading = f"## netops · {message['model'] or 'no model'} · {message['created']}"
    if message["status"] != "complete":
        heading += f" · {message['status']}"
    lines = [heading, ""]
    for call in message["tool_calls"]:
        result = "\n".join(str(c.get("text", "")) for c in call["content"] if c.get("type") == "text")
        outcome = "error" if call["is_error"] else "result"
        duration = f"{call['duration_ms']:.0f} ms" if call["duration_ms"] is not None else "-"
        lines += [
            f"**Tool call [{call['number']}]** `{call['tool']}` on {call['source']} ({duration})",
            "",
            "```json",
            json.dumps(call["arguments"], indent=2, ensure_ascii=False),
            "```",
            "",
            f"{outcome.capitalize()}:",
            "",
            "```",
            result,
            "```",
            "",
        ]
    if message["content"]:
        lines += [message["content"], ""]
    if message["error"]:
        lines += [f"> **Error:** {message['error']}", ""]
    if message["citations"]:
        lines += ["**Sources**", ""]
        lines += [
            f"{c['number']}. `{c['tool']}` on {c['source']} — `{json.dumps(c['arguments'], ensure_ascii=False)}`"
            for c in message["citations"]
        ]
        lines.append("")
    return lines


def filename(conversation: Conversation, fmt: str) -> str:
    return f"netops-{slugify(conversation.title)[:40] or 'conversation'}-{str(conversation.pk)[:8]}.{fmt}"
