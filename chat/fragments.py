"""HTML fragments for the chat page and its websocket frames (htmx ``ws`` extension, swapped out of band).

Tokens are the hot path: they are escaped and wrapped with an f-string, never a template. Whole
messages and tool cards go through templates. Model text is always escaped while streaming and
rendered as sanitised Markdown (:func:`chat.markdown.render_markdown`) once the answer ends.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from html import escape
from typing import Any

from django.template.loader import render_to_string
from django.urls import reverse

from chat import content as contents
from chat.markdown import render_markdown
from chat.models import Message, MessageStatus, ToolCall


def token(message_id: int, text: str) -> str:
    """Append ``text`` to the streaming text of the answer."""
    return f'<div id="m{message_id}-text" hx-swap-oob="beforeend">{escape(text, quote=False)}</div>'


def replace_text(message_id: int, text: str) -> str:
    """Replace the streaming text wholesale (after a gap in the events another process sent)."""
    return f'<div id="m{message_id}-text" class="msg-text streaming" hx-swap-oob="true">{escape(text, quote=False)}</div>'


def _card(card: dict[str, Any]) -> dict[str, Any]:
    return {
        **card,
        "arguments_json": json.dumps(card.get("arguments", {}), indent=2, ensure_ascii=False),
        "progress": _progress(card.get("progress")),
    }


def _progress(progress: dict[str, Any] | None) -> dict[str, Any] | None:
    """A progress bar's figures: ``value``/``max`` when the total is known, else indeterminate."""
    if not progress:
        return None
    value, total = float(progress.get("progress") or 0), progress.get("total")
    shown: dict[str, Any] = {"message": str(progress.get("message") or ""), "known": False, "value": value}
    if isinstance(total, int | float) and total > 0:
        shown.update(known=True, max=float(total), percent=min(100, max(0, round(100 * value / total))))
    return shown


def tool_progress(message_id: int, card: dict[str, Any]) -> str:
    """The progress bar of a running card, replaced in place (the card itself stays, open or not)."""
    return render_to_string(
        "chat/_partials/tool_progress.html",
        {"message_id": message_id, "card": _card(card), "oob": True},
    )


def _stored_card(call: ToolCall, conversation_id: Any) -> dict[str, Any]:
    """A stored call as its card: images served by netops' own view, links only for http(s)."""
    items = []
    for item in contents.card_items(call.content):
        shown = asdict(item)
        if item.kind == "image":
            shown["url"] = reverse("chat:tool_content", args=[conversation_id, call.pk, item.index])
        items.append(shown)
    return _card(
        {
            "number": call.number,
            "name": call.name,
            "source": call.source,
            "arguments": call.arguments,
            "status": "refused" if call.refused else "error" if call.is_error else "ok",
            "text": contents.result_text(call.content),
            "items": items,
            "duration_ms": call.duration_ms or 0,
        }
    )


def tool_card(message_id: int, card: dict[str, Any], *, new: bool) -> str:
    """A tool card: appended to the answer's cards when it starts, replaced in place when it ends."""
    html = render_to_string(
        "chat/_partials/tool_card.html", {"message_id": message_id, "card": _card(card), "oob": not new}
    )
    if new:
        return f'<div id="m{message_id}-tools" hx-swap-oob="beforeend">{html}</div>'
    return html


def running_message(state: dict[str, Any], *, oob: bool = True) -> str:
    """The answer as it is now (text so far, cards), e.g. for a tab that re-attaches mid-stream."""
    message = Message(pk=state["message_id"], role="assistant", model_name=state.get("model_name", ""))
    return render_to_string(
        "chat/_partials/message.html",
        {
            "message": message,
            "status": MessageStatus.RUNNING,
            "text": state.get("text", ""),
            "cards": [_card(c) for c in state.get("cards", [])],
            "oob": oob,
        },
    )


def message_context(message: Message) -> dict[str, Any]:
    """Template context of a stored message (its tool calls prefetched or fetched here)."""
    cards = [
        _stored_card(call, message.conversation_id)
        for call in (message.tool_calls.all() if message.role == "assistant" else ())
    ]
    for citation in message.citations:
        citation["arguments_text"] = json.dumps(citation.get("arguments", {}), ensure_ascii=False)
    return {
        "message": message,
        "status": message.status,
        "text": message.content,
        "rendered": render_markdown(message.content)
        if message.role == "assistant" and message.content
        else "",
        "cards": cards,
    }


def stored_message(message: Message, *, oob: bool = True) -> str:
    """A stored message, final (the swap that ends a streamed answer)."""
    return render_to_string("chat/_partials/message.html", {**message_context(message), "oob": oob})


def question_and_answer(state: dict[str, Any]) -> str:
    """Append a new question and its (still empty) running answer; refresh the title it may have set."""
    question = Message(pk=state["question_id"], role="user", content=state["question"])
    frame = appended(stored_message(question, oob=False) + running_message(state, oob=False))
    if state.get("title"):
        title = escape(state["title"])
        frame += (
            f'<h1 id="chat-title" title="{title}" hx-swap-oob="true">{title}</h1>'
            f'<a id="conv-link-{state["conversation_id"]}" href="/chat/{state["conversation_id"]}/" title="{title}"'
            f' hx-swap-oob="true">{title}</a>'
        )
    return frame


def appended(html: str) -> str:
    """Wrap message HTML so that it is appended to the message list."""
    return f'<div id="messages" hx-swap-oob="beforeend">{html}</div>'


def run_indicator(running: bool) -> str:
    """The composer's state: the stop button shows while an answer runs."""
    state = "running" if running else "idle"
    return f'<div id="run-indicator" class="run-indicator {state}" hx-swap-oob="true" data-state="{state}"></div>'


def error_toast(text: str) -> str:
    """A dismissable error above the composer (the conversation itself stays intact)."""
    return (
        f'<div id="chat-toast" class="toast toast-error" role="alert" hx-swap-oob="true">{escape(text)}</div>'
    )


def change_notice(change_id: int, state: str, summary: str) -> str:
    """Tell the conversation what became of a change request it asked for."""
    return (
        f'<div id="chat-toast" class="toast toast-info" role="status" hx-swap-oob="true">'
        f'Change request <a href="/changes/{int(change_id)}/">#{int(change_id)}</a> ({escape(summary)}) is now '
        f"<strong>{escape(state)}</strong>.</div>"
    )


def change_progress(change_id: int, done: int, total: int) -> str:
    """How far a worker is with a change request this conversation asked for."""
    return (
        f'<div id="chat-toast" class="toast toast-info" role="status" hx-swap-oob="true">'
        f'Change request <a href="/changes/{int(change_id)}/">#{int(change_id)}</a> is being applied: '
        f"{int(done):,} of {int(total):,} operations.</div>"
    )


def clear_toast() -> str:
    return '<div id="chat-toast" class="toast" hx-swap-oob="true"></div>'
