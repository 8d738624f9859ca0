"""Running answers: each answer is its own asyncio task, watched by any number of sockets.

A run belongs to the process that started it. Sockets of that process attach to it directly and
get every token as it arrives (:meth:`RunHandle.attach`). For everyone else — a refresh that lands
on another daphne process, a second tab there, a dropped connection that comes back — the run
saves a checkpoint (text so far, tool cards, status) every ``FLUSH_INTERVAL`` and publishes coarse
events on the conversation's channel-layer group: batched text with its offset, tool cards, the
end. Stop requests travel the other way on the same group, so any tab can stop any run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth.models import AbstractBaseUser

from chat import content as contents
from chat import selectors, services
from chat.agent import Agent, AgentEvent, AgentLimits, ToolProgressEvent
from chat.checkpoints import checkpoint_store
from chat.llm import LLMSettings, client_for, describe_llm_error
from chat.models import Conversation, Message, MessageStatus
from netops import metrics
from netops.errors import ApplicationError, ConflictError
from netops.redaction import redactor_for, sanitize
from registry.catalog import CallContext, ToolCatalog

logger = logging.getLogger(__name__)

PROCESS_ID = uuid.uuid4().hex
FLUSH_INTERVAL = 0.1
HEARTBEAT_INTERVAL = 5.0
HEARTBEAT_STALE = 20.0
# What a Redis outage raises from the checkpoint client and the channel layer (redis-py's own
# TimeoutError is not the built-in one).
SHARED_STATE_ERRORS = (redis.RedisError, OSError)
# A tool card shows at most this much of a result (already redacted and capped by the catalog);
# the cut says so, and the card shows "truncated".
CARD_TEXT_LIMIT = 100_000

RunListener = Callable[[dict[str, Any]], None]


def card_status(*, is_error: bool, refused: bool) -> str:
    """A finished card's status: ``refused`` (never ran: bad arguments), ``error`` or ``ok``."""
    return "refused" if refused else "error" if is_error else "ok"


def group_name(conversation_id: str) -> str:
    """The channel-layer group of one conversation (every tab of it, in every process)."""
    return f"chat.{conversation_id}"


@dataclass
class RunState:
    """What a tab needs to show a running answer; also the checkpoint's content."""

    conversation_id: str
    message_id: int
    question_id: int
    question: str
    model_name: str
    title: str = ""
    status: str = MessageStatus.RUNNING
    text: str = ""
    cards: dict[str, dict[str, Any]] = field(default_factory=dict)
    origin: str = PROCESS_ID

    def as_dict(self) -> dict[str, Any]:
        return {
            "heartbeat": time.time(),
            "conversation_id": self.conversation_id,
            "message_id": self.message_id,
            "question_id": self.question_id,
            "question": self.question,
            "model_name": self.model_name,
            "title": self.title,
            "status": self.status,
            "text": self.text,
            "cards": [dict(card) for card in self.cards.values()],
            "origin": self.origin,
        }


class RunHandle:
    """One running answer: its task, its state, and the sockets of this process attached to it."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        self.task: asyncio.Task[None] | None = None
        self.listeners: set[RunListener] = set()
        self._flushed_chars = 0
        self._published_chars = 0  # text offset that surely reached the channel layer
        self._shared = True  # the last flush reached Redis
        self._flush_task: asyncio.Task[None] | None = None
        self._control_task: asyncio.Task[None] | None = None
        self._last_flush = 0.0

    # --- watchers -------------------------------------------------------------------------------

    def attach(self, listener: RunListener) -> dict[str, Any]:
        """Start receiving events; returns the state at that instant (no await: nothing slips between)."""
        self.listeners.add(listener)
        return self.state.as_dict()

    def detach(self, listener: RunListener) -> None:
        self.listeners.discard(listener)

    def _notify(self, event: dict[str, Any]) -> None:
        for listener in tuple(self.listeners):
            listener(event)

    # --- the agent's sink -------------------------------------------------------------------------

    async def emit(self, event: AgentEvent) -> None:
        """Receive an agent event: update the state, tell the local watchers, schedule the shared copy."""
        if event["type"] == "token":
            offset = len(self.state.text)
            self.state.text += event["text"]
            self._notify(
                {
                    "kind": "token",
                    "message_id": self.state.message_id,
                    "offset": offset,
                    "text": event["text"],
                }
            )
            if self._flush_task is None:
                self._flush_task = asyncio.create_task(self._flush_later())
            return
        if event["type"] == "tool_progress":
            await self._progress(event)
            return
        card = {
            "call_id": event["call_id"],
            "number": event["number"],
            "name": event["name"],
            "source": event["source"],
            "arguments": event["arguments"],
            "status": "running",
        }
        if event["type"] == "tool_end":
            card.update(
                status=card_status(is_error=event["is_error"], refused=event["refused"]),
                text=sanitize(event["text"], limit=CARD_TEXT_LIMIT),
                duration_ms=round(event["duration_ms"], 1),
                # Images and links of a running answer are described; the stored answer shows them.
                items=[asdict(item) for item in contents.card_items(event["content"])],
            )
        self.state.cards[event["call_id"]] = card
        self._notify({"kind": "tool", "message_id": self.state.message_id, "card": card})
        await self.flush(tool=card)

    async def _progress(self, event: ToolProgressEvent) -> None:
        """A running call's progress: kept in its card, shown by this process's and other tabs."""
        card = self.state.cards.get(event["call_id"])
        if card is None or card["status"] != "running":
            return  # the call ended (a late notification) or never started here
        card["progress"] = progress = {
            "progress": event["progress"],
            "total": event["total"],
            "message": event["message"],
        }
        self._notify({"kind": "progress", "message_id": self.state.message_id, "card": card})
        layer = get_channel_layer()
        if layer is None:
            return
        # Throttled by the agent (~10/s). Redis away: other processes' tabs miss a step of the bar.
        with contextlib.suppress(*SHARED_STATE_ERRORS):
            await layer.group_send(
                group_name(self.state.conversation_id),
                {
                    "type": "run.progress",
                    "origin": PROCESS_ID,
                    "message_id": self.state.message_id,
                    "card": {"number": card["number"], "status": "running", "progress": progress},
                },
            )

    async def _flush_later(self) -> None:
        await asyncio.sleep(max(0.0, self._last_flush + FLUSH_INTERVAL - time.monotonic()))
        self._flush_task = None
        await self.flush()

    async def flush(self, *, tool: dict[str, Any] | None = None) -> None:
        """Save the checkpoint and publish what other processes have not seen yet.

        Redis going away (restart, failover, timeout) must not kill the answer: the run goes on for
        the sockets of this process, and the next flush publishes everything from the last offset
        that reached the other processes.
        """
        try:
            await self._flush(tool=tool)
        except SHARED_STATE_ERRORS as exc:
            self._flushed_chars = min(self._flushed_chars, self._published_chars)
            if self._shared:  # once per outage, not every flush interval
                logger.warning(
                    "chat run checkpoint not shared: %s",
                    type(exc).__name__,
                    extra={"conversation": self.state.conversation_id},
                )
            self._shared = False
        else:
            self._shared = True

    async def _flush(self, *, tool: dict[str, Any] | None = None) -> None:
        self._last_flush = time.monotonic()
        state = self.state
        await checkpoint_store().save(state.conversation_id, state.as_dict())
        layer = get_channel_layer()
        if layer is None:
            return
        group = group_name(state.conversation_id)
        if len(state.text) > self._flushed_chars:
            offset, self._flushed_chars = self._flushed_chars, len(state.text)
            await layer.group_send(
                group,
                {
                    "type": "run.delta",
                    "origin": PROCESS_ID,
                    "message_id": state.message_id,
                    "offset": offset,
                    "text": state.text[offset:],
                },
            )
            self._published_chars = self._flushed_chars
        if tool is not None:
            await layer.group_send(
                group,
                {"type": "run.tool", "origin": PROCESS_ID, "message_id": state.message_id, "card": tool},
            )

    async def control(self) -> None:
        """Listen on the conversation's group for stop requests from any process; keep the checkpoint fresh.

        The run listens itself (not only the sockets watching it) so that a stop from a tab on
        another process works even when no socket of this process is attached any more.
        """
        layer = get_channel_layer()
        if layer is None:
            return
        group = group_name(self.state.conversation_id)
        backoff = 0.5
        while True:
            try:
                await self._listen(layer, group)
            except SHARED_STATE_ERRORS as exc:
                # Redis restarted or unreachable: keep the run going, listen again with backoff.
                logger.warning(
                    "chat run control lost the channel layer: %s; retrying in %.1f s",
                    type(exc).__name__,
                    backoff,
                    extra={"conversation": self.state.conversation_id},
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, HEARTBEAT_INTERVAL)

    async def _listen(self, layer: Any, group: str) -> None:
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        try:
            while True:
                try:
                    message = await asyncio.wait_for(layer.receive(channel), HEARTBEAT_INTERVAL)
                except TimeoutError:
                    await self.flush()  # heartbeat: a checkpoint older than HEARTBEAT_STALE is a dead run
                    continue
                if message.get("type") == "run.stop" and self.task is not None:
                    self.task.cancel()
        finally:
            with contextlib.suppress(Exception):
                await layer.group_discard(group, channel)


_runs: dict[str, RunHandle] = {}
metrics.CHAT_RUNS_ACTIVE.set_function(lambda: len(_runs))


def local_run(conversation_id: str) -> RunHandle | None:
    """The run of ``conversation_id`` in this process, if one is going."""
    return _runs.get(conversation_id)


@dataclass
class _Prepared:
    question: Message
    answer: Message
    llm: LLMSettings | None = None
    catalog: ToolCatalog | None = None
    messages: list[dict[str, Any]] = field(default_factory=list)
    limits: AgentLimits = field(default_factory=AgentLimits)
    error: str = ""


def _prepare(conversation: Conversation, text: str) -> _Prepared:
    """Everything from the database a run needs, in one thread hop; errors become the answer's error.

    A tool list longer than one model request may carry is refused before the question is stored
    (:class:`chat.selectors.ToolListTooLong`, naming the servers to deselect).
    """
    catalog = ToolCatalog.load(
        server_ids=selectors.server_selection(conversation),
        context=CallContext(
            user_id=conversation.user_id,
            via=f"chat conversation {conversation.pk}",
            conversation_id=str(conversation.pk),
        ),
    )
    selectors.check_tool_budget(selectors.tool_budget_of(catalog))
    model = None
    try:
        model = selectors.llm_model_for(conversation)
    except ApplicationError as exc:
        failure = exc.message
    else:
        failure = ""
    question, answer = services.message_start(
        conversation=conversation, text=text, model_name=model.name if model is not None else ""
    )
    prepared = _Prepared(question=question, answer=answer, error=failure)
    if model is None:
        return prepared
    try:
        prepared.llm = selectors.llm_settings(model)
    except ApplicationError as exc:
        prepared.error = f"Model {model.name} is misconfigured: {exc.message}"
        return prepared
    agent_settings = selectors.agent_settings()
    prepared.limits = AgentLimits(
        max_steps=agent_settings.max_steps,
        tool_result_max_chars=agent_settings.tool_result_max_chars,
        max_tools=selectors.max_tools(),
    )
    prepared.catalog = catalog
    history = selectors.llm_history(
        conversation, limit=agent_settings.history_max_messages, before_id=question.pk
    )
    prepared.messages = [
        {"role": "system", "content": agent_settings.system_prompt},
        *history,
        {"role": "user", "content": question.content},
    ]
    return prepared


async def start_run(*, conversation: Conversation, user: AbstractBaseUser, text: str) -> RunHandle:
    """Store the question, start the answer as its own task and return its handle.

    Refused with :class:`ConflictError` while an answer of the same conversation is running in this
    process or, per its checkpoint, in another one.
    """
    key = str(conversation.pk)
    if key in _runs or await _running_elsewhere(key):
        raise ConflictError("an answer is still running in this conversation; stop it or wait for it")
    prepared = await database_sync_to_async(_prepare)(conversation, text)
    handle = RunHandle(
        RunState(
            conversation_id=key,
            message_id=prepared.answer.pk,
            question_id=prepared.question.pk,
            question=prepared.question.content,
            model_name=prepared.answer.model_name,
            title=conversation.title,
        )
    )
    _runs[key] = handle
    await handle.flush()
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(
            group_name(key),
            {"type": "run.started", "origin": PROCESS_ID, "state": handle.state.as_dict()},
        )
    handle.task = asyncio.create_task(_drive(handle, prepared), name=f"chat-run-{key}")
    handle._control_task = asyncio.create_task(handle.control(), name=f"chat-run-control-{key}")
    logger.info(
        "chat run started", extra={"conversation": key, "message_id": prepared.answer.pk, "user_id": user.pk}
    )
    return handle


async def running_checkpoint(conversation_id: str) -> dict[str, Any] | None:
    """The checkpoint of a live run of ``conversation_id`` (any process), or None."""
    checkpoint = await checkpoint_store().load(conversation_id)
    if not checkpoint or checkpoint.get("status") != MessageStatus.RUNNING:
        return None
    if time.time() - float(checkpoint.get("heartbeat", 0)) > HEARTBEAT_STALE:
        return None  # its process died; the answer row is marked interrupted when the page loads
    return checkpoint


async def _running_elsewhere(conversation_id: str) -> bool:
    return await running_checkpoint(conversation_id) is not None


async def stop_run(conversation_id: str) -> bool:
    """Stop the conversation's run: here if it runs here, else ask the other processes. True if asked."""
    handle = _runs.get(conversation_id)
    if handle is not None and handle.task is not None and not handle.task.done():
        handle.task.cancel()
        return True
    layer = get_channel_layer()
    if layer is not None and await _running_elsewhere(conversation_id):
        await layer.group_send(group_name(conversation_id), {"type": "run.stop", "origin": PROCESS_ID})
        return True
    return False


async def _drive(handle: RunHandle, prepared: _Prepared) -> None:
    """The run task: the agent loop, then the one save of the answer, then the end event."""
    agent: Agent | None = None
    status, error = MessageStatus.COMPLETE, prepared.error
    try:
        if error:
            status = MessageStatus.ERROR
        else:
            assert prepared.llm is not None and prepared.catalog is not None
            agent = Agent(
                client=client_for(prepared.llm),
                model=prepared.llm.model,
                tools=prepared.catalog,
                sink=handle.emit,
                temperature=prepared.llm.temperature,
                max_tokens=prepared.llm.max_tokens,
                limits=prepared.limits,
                accepts_images=prepared.llm.accepts_images,
                redactor=redactor_for([prepared.llm.api_key]),
            )
            await agent.run(prepared.messages)
    except asyncio.CancelledError:
        status = MessageStatus.STOPPED
    except Exception as exc:  # every failure ends as a visible error in the chat, never a hung spinner
        status = MessageStatus.ERROR
        error = describe_llm_error(exc, prepared.llm) if prepared.llm is not None else sanitize(str(exc))
        logger.warning(
            "chat run failed", extra={"conversation": handle.state.conversation_id, "error": error}
        )
    await _finish(handle, prepared, agent, status, error)


async def _finish(
    handle: RunHandle, prepared: _Prepared, agent: Agent | None, status: str, error: str
) -> None:
    state = handle.state
    for helper in (handle._flush_task, handle._control_task):
        if helper is not None:
            helper.cancel()
    try:
        await database_sync_to_async(services.message_finish)(
            message=prepared.answer,
            text=agent.text if agent is not None else "",
            status=status,
            error=error,
            citations=agent.citations() if agent is not None else [],
            calls=agent.calls if agent is not None else [],
            prompt_tokens=agent.prompt_tokens if agent is not None else None,
            completion_tokens=agent.completion_tokens if agent is not None else None,
        )
    finally:
        state.status = status
        _runs.pop(state.conversation_id, None)
        if agent is not None:  # the model was asked (runs refused before that are not LLM requests)
            metrics.observe_llm_run(
                model=state.model_name,
                status=status,
                prompt_tokens=agent.prompt_tokens,
                completion_tokens=agent.completion_tokens,
            )
        with contextlib.suppress(Exception):
            await checkpoint_store().clear(state.conversation_id)
        handle._notify({"kind": "done", "message_id": state.message_id, "status": status})
        layer = get_channel_layer()
        if layer is not None:
            with contextlib.suppress(Exception):
                await layer.group_send(
                    group_name(state.conversation_id),
                    {
                        "type": "run.done",
                        "origin": PROCESS_ID,
                        "message_id": state.message_id,
                        "status": status,
                    },
                )
        logger.info(
            "chat run finished",
            extra={"conversation": state.conversation_id, "message_id": state.message_id, "status": status},
        )
