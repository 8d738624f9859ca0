"""The chat websocket: authenticate, check ownership, start or stop runs, relay their events as HTML.

Thin by design (CONVENTIONS 10): the run is its own task (:mod:`chat.runs`); this consumer only
attaches to it and turns its events into htmx frames. Events from a run in this process arrive
through a listener into a queue; a single sender task drains the queue and coalesces the tokens
that piled up into one frame, so a slow socket gets fewer, larger frames instead of a backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer

from chat import fragments, runs, selectors
from chat.models import Conversation, Message, MessageRole
from netops import metrics
from netops.errors import ApplicationError, InvalidInput, NotFoundError
from netops.input_guard import loads_json

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
MAX_FRAME_BYTES = 64_000


def _stored(message_id: int) -> str:
    message = Message.objects.prefetch_related("tool_calls").get(pk=message_id)
    return fragments.stored_message(message)


def _latest_answer(conversation: Conversation) -> str:
    answer = (
        conversation.messages.filter(role=MessageRole.ASSISTANT)
        .prefetch_related("tool_calls")
        .order_by("-id")
        .first()
    )
    return fragments.stored_message(answer) if answer is not None else ""


class ChatConsumer(AsyncWebsocketConsumer):
    """``/ws/chat/<conversation>/``: one socket of one tab watching one conversation."""

    conversation: Conversation
    group: str
    sender: asyncio.Task[None] | None = None
    counted = False  # accepted, so in the websocket-sessions gauge

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # daphne cancels the consumer at shutdown without calling disconnect(): end the sender too.
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.sender is not None:
                self.sender.cancel()
            if self.counted:  # after disconnect(), or when cancelled without it
                metrics.WEBSOCKET_SESSIONS.dec()

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        try:
            self.conversation = await database_sync_to_async(selectors.conversation_for)(
                user, conversation_id
            )
        except NotFoundError:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.key = str(self.conversation.pk)
        self.group = runs.group_name(self.key)
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.attached: runs.RunHandle | None = None
        self.shown_chars: dict[int, int] = {}
        await self.accept()
        self.counted = True
        metrics.WEBSOCKET_SESSIONS.inc()
        await self.channel_layer.group_add(self.group, self.channel_name)
        self.sender = asyncio.create_task(self._send_loop())
        await self._resume()

    async def disconnect(self, code: int) -> None:
        if self.attached is not None:
            self.attached.detach(self._on_event)
            self.attached = None
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.sender is not None:
            self.sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.sender

    # --- from the browser -----------------------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            data = loads_json(text_data or "", what="the message")
        except InvalidInput as exc:  # NUL, a lone surrogate, too deep: refused here, the socket stays
            self._push_frame(fragments.error_toast(f"Could not read that message: {exc}."))
            return
        if not isinstance(data, dict):
            self._push_frame(fragments.error_toast("Could not read that message (expected a JSON object)."))
            return
        action = data.get("action") or "send"
        if action == "stop":
            if not await runs.stop_run(self.key):
                self._push_frame(fragments.run_indicator(False))
            return
        if action != "send":
            self._push_frame(fragments.error_toast(f"Unknown action {str(action)[:40]!r}."))
            return
        text = data.get("message")
        if not isinstance(text, str) or not text.strip():
            self._push_frame(fragments.error_toast("Type a message first."))
            return
        try:
            handle = await runs.start_run(conversation=self.conversation, user=self.scope["user"], text=text)
        except ApplicationError as exc:
            self._push_frame(fragments.error_toast(exc.message))
            return
        await self._attach_new(handle)

    # --- local runs -------------------------------------------------------------------------------

    async def _attach_new(self, handle: runs.RunHandle) -> None:
        """Show the question and an empty answer, then follow the run from its first token."""
        if self.attached is handle:
            return
        # The frame is queued before the listener is added, with no await in between: the answer's
        # first token (or its immediate end) cannot overtake the placeholder it belongs in.
        self._push_frame(
            fragments.clear_toast()
            + fragments.question_and_answer(handle.state.as_dict())
            + fragments.run_indicator(True)
        )
        self._attach(handle)

    def _attach(self, handle: runs.RunHandle) -> dict[str, Any]:
        if self.attached is not None:
            self.attached.detach(self._on_event)
        self.attached = handle
        snapshot = handle.attach(self._on_event)
        self.shown_chars[handle.state.message_id] = len(snapshot["text"])
        return snapshot

    def _on_event(self, event: dict[str, Any]) -> None:
        self.queue.put_nowait(event)

    def _push_frame(self, html: str) -> None:
        self.queue.put_nowait({"kind": "frame", "html": html})

    async def _resume(self) -> None:
        """On (re)connect: show the running answer as it is now and follow it, or the latest answer."""
        handle = runs.local_run(self.key)
        if handle is not None:
            snapshot = self._attach(handle)
            self._push_frame(fragments.running_message(snapshot) + fragments.run_indicator(True))
            return
        checkpoint = await runs.running_checkpoint(self.key)
        if checkpoint is not None:
            self.shown_chars[checkpoint["message_id"]] = len(checkpoint["text"])
            self._push_frame(fragments.running_message(checkpoint) + fragments.run_indicator(True))
            return
        latest = await database_sync_to_async(_latest_answer)(self.conversation)
        self._push_frame(latest + fragments.run_indicator(False))

    async def _send_loop(self) -> None:
        while True:
            events = [await self.queue.get()]
            while not self.queue.empty():
                events.append(self.queue.get_nowait())
            frame = await self._render(events)
            if frame:
                await self.send(text_data=frame)

    async def _render(self, events: list[dict[str, Any]]) -> str:
        parts: list[str] = []
        pending_id, pending_text = 0, ""
        for event in events:
            kind = event["kind"]
            if kind == "token" and (not pending_text or event["message_id"] == pending_id):
                pending_id, pending_text = event["message_id"], pending_text + event["text"]
                self.shown_chars[pending_id] = event["offset"] + len(event["text"])
                continue
            if pending_text:
                parts.append(fragments.token(pending_id, pending_text))
                pending_text = ""
            if kind == "token":
                pending_id, pending_text = event["message_id"], event["text"]
                self.shown_chars[pending_id] = event["offset"] + len(event["text"])
            elif kind == "frame":
                parts.append(event["html"])
            elif kind == "tool":
                parts.append(
                    fragments.tool_card(
                        event["message_id"], event["card"], new=event["card"]["status"] == "running"
                    )
                )
            elif kind == "progress":
                parts.append(fragments.tool_progress(event["message_id"], event["card"]))
            elif kind == "done":
                if self.attached is not None and self.attached.state.message_id == event["message_id"]:
                    self.attached.detach(self._on_event)
                    self.attached = None
                parts.append(await database_sync_to_async(_stored)(event["message_id"]))
                parts.append(fragments.run_indicator(False))
        if pending_text:
            parts.append(fragments.token(pending_id, pending_text))
        return "".join(parts)

    # --- from the channel layer (runs in other processes, other tabs) --------------------------------

    async def run_started(self, event: dict[str, Any]) -> None:
        state = event["state"]
        handle = runs.local_run(self.key) if event["origin"] == runs.PROCESS_ID else None
        if handle is not None and handle.state.message_id == state["message_id"]:
            await self._attach_new(handle)
            return
        if self.attached is not None and self.attached.state.message_id == state["message_id"]:
            return
        # Another process's run, or a local one that already ended: show it, then its deltas or its end.
        self.shown_chars[state["message_id"]] = 0
        frame = fragments.question_and_answer(state) + fragments.run_indicator(True)
        if event["origin"] == runs.PROCESS_ID:
            frame += await database_sync_to_async(_stored)(state["message_id"]) + fragments.run_indicator(
                False
            )
        self._push_frame(frame)

    async def run_delta(self, event: dict[str, Any]) -> None:
        if event["origin"] == runs.PROCESS_ID:
            return  # sockets of this process get every token from the run directly
        message_id, offset, text = event["message_id"], event["offset"], event["text"]
        shown = self.shown_chars.get(message_id, 0)
        end = offset + len(text)
        if end <= shown:
            return
        if offset > shown:
            # A gap (this socket joined between two deltas): resynchronise from the checkpoint.
            checkpoint = await runs.running_checkpoint(self.key)
            if checkpoint is not None and checkpoint["message_id"] == message_id:
                self.shown_chars[message_id] = len(checkpoint["text"])
                self._push_frame(fragments.replace_text(message_id, checkpoint["text"]))
            return
        self.shown_chars[message_id] = end
        self._push_frame(fragments.token(message_id, text[shown - offset :]))

    async def run_tool(self, event: dict[str, Any]) -> None:
        if event["origin"] == runs.PROCESS_ID:
            return
        card = event["card"]
        self._push_frame(fragments.tool_card(event["message_id"], card, new=card["status"] == "running"))

    async def run_progress(self, event: dict[str, Any]) -> None:
        if event["origin"] == runs.PROCESS_ID:
            return
        self._push_frame(fragments.tool_progress(event["message_id"], event["card"]))

    async def run_done(self, event: dict[str, Any]) -> None:
        if event["origin"] == runs.PROCESS_ID:
            return
        self._push_frame(
            await database_sync_to_async(_stored)(event["message_id"]) + fragments.run_indicator(False)
        )

    async def change_outcome(self, event: dict[str, Any]) -> None:
        """A change request this conversation asked for moved (approved and applied, rejected, ...)."""
        self._push_frame(fragments.change_notice(event["id"], event["state"], event["summary"]))

    async def change_progress(self, event: dict[str, Any]) -> None:
        """A worker is applying a change request this conversation asked for: how far it is."""
        self._push_frame(fragments.change_progress(int(event["id"]), int(event["done"]), int(event["total"])))

    async def run_stop(self, event: dict[str, Any]) -> None:
        """Stop requests are for the run's own control channel; sockets ignore them."""
