"""The agent loop: stream a chat completion, run the tool calls it asks for, feed results back.

Imports no Django: it takes an OpenAI SDK client, a tool source (the registry's tool catalog in
production), an event sink and a redactor, so it can be tested and benchmarked alone. The model's
endpoint is a remote party like any other: its streamed text goes through a streaming redactor
before it reaches the sink (and so the socket, the SSE stream and the checkpoint) or ``text``. Events go to the sink as
they happen (tokens, tool starts and ends); the partial state (``text``, ``calls``) stays readable
after a cancellation or an error so the caller can keep what was produced.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict

import openai
from openai import AsyncOpenAI

from chat import content as contents
from chat.llm import StreamCut
from chat.toolbudget import DEFAULT_MAX_TOOLS, TooManyTools, tool_budget
from netops.redaction import Redactor, redactor_for

_CITATION = re.compile(r"\[(\d{1,3})\]")


class ToolInfo(Protocol):
    """What the agent needs to know of a tool (``registry.catalog.CatalogTool`` fits)."""

    name: str
    description: str
    input_schema: dict[str, Any]
    source: str


class ToolOutcome(Protocol):
    """A tool result (``registry.connections.ToolCallOutcome`` fits)."""

    content: list[dict[str, Any]]
    structured_content: Any
    is_error: bool
    duration_ms: float

    def text(self) -> str: ...


class ToolSource(Protocol):
    """The tools on offer and a way to call them; failures come back as ``is_error`` outcomes.

    A source whose ``call`` takes a ``progress`` keyword (``registry.catalog.ToolCatalog``) gets a
    callback ``progress(progress, total, message)`` for the server's progress notifications.
    """

    def tools(self) -> list[Any]: ...

    async def call(self, name: str, arguments: dict[str, Any], *, timeout: float | None = None) -> Any: ...


ProgressCallback = Callable[[float, float | None, str | None], Awaitable[None]]
# HTTP-style statuses of an outcome that mean "refused before anything ran" (arguments that fail
# the tool's schema: the catalog's validator answers 400; 422 from a strict server likewise).
REFUSED_STATUSES = frozenset({400, 422})


class TokenEvent(TypedDict):
    type: Literal["token"]
    text: str


class ToolCallFields(TypedDict):
    """What both tool events say about the call (the card in the browser is keyed by ``call_id``)."""

    call_id: str
    number: int
    name: str
    source: str
    arguments: dict[str, Any]


class ToolStartEvent(ToolCallFields):
    type: Literal["tool_start"]


class ToolEndEvent(ToolCallFields):
    type: Literal["tool_end"]
    is_error: bool
    # True when the call never ran: its arguments failed the tool's schema (the text names the
    # field and the rule), the tool does not exist, or the arguments were not a JSON object.
    refused: bool
    text: str
    duration_ms: float
    content: list[dict[str, Any]]  # the outcome's MCP content items (images and links for the card)


class ToolProgressEvent(TypedDict):
    """A progress notification of a running call (throttled by ``AgentLimits.progress_interval``)."""

    type: Literal["tool_progress"]
    call_id: str
    number: int
    progress: float
    total: float | None
    message: str


AgentEvent = TokenEvent | ToolStartEvent | ToolEndEvent | ToolProgressEvent
EventSink = Callable[[AgentEvent], Awaitable[None]]


@dataclass
class ToolCallRecord:
    """One tool call of the run, numbered for citations; ``outcome`` is None while it runs."""

    call_id: str
    number: int
    name: str
    source: str
    arguments: dict[str, Any]
    outcome: Any = None
    refused: bool = False  # see ToolEndEvent.refused

    def fields(self) -> ToolCallFields:
        return ToolCallFields(
            call_id=self.call_id,
            number=self.number,
            name=self.name,
            source=self.source,
            arguments=self.arguments,
        )

    def citation(self) -> dict[str, Any]:
        return {"number": self.number, "tool": self.name, "source": self.source, "arguments": self.arguments}


@dataclass
class AgentLimits:
    max_steps: int = 8
    tool_result_max_chars: int = 12000
    max_tools: int = DEFAULT_MAX_TOOLS  # tools per request (OpenAI takes at most 128)
    progress_interval: float = 0.1  # seconds between two progress events of one call (~10/s)


@dataclass
class _PendingCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class Agent:
    """One run of the agent for one answer. Create, then ``await run(messages)`` once."""

    client: AsyncOpenAI
    model: str
    tools: ToolSource
    sink: EventSink
    temperature: float = 0.0
    max_tokens: int | None = None
    limits: AgentLimits = field(default_factory=AgentLimits)
    # The model takes image input: a tool's images follow its results as a user message of image
    # parts (chat completions allow only text in a tool message). Otherwise they are described.
    accepts_images: bool = False
    # Masks every secret of the model and of netops in the answer, the tool arguments and errors.
    redactor: Redactor = field(default_factory=redactor_for)
    text: str = ""
    calls: list[ToolCallRecord] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    async def run(self, messages: Sequence[dict[str, Any]]) -> str:
        """Run to a final answer (or the step limit) and return the full answer text."""
        conversation = list(messages)
        offered = self.tools.tools()
        budget = tool_budget(offered, limit=self.limits.max_tools)
        if budget.exceeded:  # the provider would reject the request: refuse before asking
            raise TooManyTools(budget)
        by_name = {t.name: t for t in offered}
        functions = [_function(t) for t in offered]
        for step in range(self.limits.max_steps + 1):
            last_step = step == self.limits.max_steps
            step_text, pending = await self._stream(conversation, functions, final=last_step)
            if not pending:
                break
            conversation.append(_assistant_message(step_text, pending))
            records = [self._record(call, by_name) for call in pending]
            results = await asyncio.gather(
                *(self._execute(record, call) for record, call in zip(records, pending, strict=True))
            )
            conversation += [
                {"role": "tool", "tool_call_id": record.call_id, "content": text}
                for record, (text, _images) in zip(records, results, strict=True)
            ]
            images = _image_message(records, [images for _text, images in results])
            if images is not None:
                conversation.append(images)
        return self.text

    def citations(self) -> list[dict[str, Any]]:
        """The tool calls the answer cites as ``[n]``, in citation order (all calls if it cites none)."""
        cited = {int(n) for n in _CITATION.findall(self.text)}
        chosen = [c for c in self.calls if c.number in cited] or self.calls
        return [c.citation() for c in chosen]

    # --- one LLM round -------------------------------------------------------------------------

    async def _stream(
        self, conversation: list[dict[str, Any]], functions: list[dict[str, Any]], *, final: bool
    ) -> tuple[str, list[_PendingCall]]:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": conversation,
            "stream": True,
            "temperature": self.temperature,
            "stream_options": {"include_usage": True},
        }
        if functions:
            request["tools"] = functions
            if final:  # the step limit is reached: the model must answer with what it has
                request["tool_choice"] = "none"
        if self.max_tokens:
            request["max_tokens"] = self.max_tokens
        step_text = ""
        pending: dict[int, _PendingCall] = {}
        finished = False
        # A secret can span token boundaries: the redactor holds back the last characters (less
        # than the longest encoded secret) until the next token or the end of the stream.
        tokens = self.redactor.stream()
        stream = await self.client.chat.completions.create(**request)
        async with stream:
            try:
                async for chunk in stream:
                    if chunk.usage is not None:
                        self.prompt_tokens += chunk.usage.prompt_tokens or 0
                        self.completion_tokens += chunk.usage.completion_tokens or 0
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    delta = choice.delta
                    if delta.content and (safe := tokens.feed(delta.content)):
                        step_text += safe
                        self.text += safe
                        await self.sink(TokenEvent(type="token", text=safe))
                    for part in delta.tool_calls or ():
                        call = pending.setdefault(part.index, _PendingCall())
                        call.id = part.id or call.id
                        if part.function is not None:
                            call.name += part.function.name or ""
                            call.arguments += part.function.arguments or ""
                    if choice.finish_reason is not None:
                        finished = True
            except openai.APIConnectionError as exc:
                # The response had started: a connection error now is the stream cut mid-answer.
                raise StreamCut(
                    f"the connection dropped mid-answer: {type(exc.__cause__ or exc).__name__}"
                ) from exc
            finally:
                # Stopped, cut or finished: what was held back is kept (redacted) in the answer.
                rest = tokens.flush()
                step_text += rest
                self.text += rest
        if rest:
            await self.sink(TokenEvent(type="token", text=rest))
        if not finished:
            raise StreamCut("the stream ended before the model finished its answer")
        calls = [pending[i] for i in sorted(pending)]
        return step_text, [] if final else calls

    # --- tool calls ----------------------------------------------------------------------------

    def _record(self, call: _PendingCall, by_name: dict[str, Any]) -> ToolCallRecord:
        tool = by_name.get(call.name)
        try:
            arguments = json.loads(call.arguments or "{}")
        except json.JSONDecodeError:
            arguments = {"_raw": call.arguments}
        record = ToolCallRecord(
            call_id=call.id or f"call_{len(self.calls) + 1}",
            number=len(self.calls) + 1,
            name=call.name,
            source=tool.source if tool is not None else "unknown",
            # The model's endpoint chose these: masked like its text before a tool or a card sees them.
            arguments=self.redactor.redact_data(
                arguments if isinstance(arguments, dict) else {"_value": arguments}
            ),
        )
        self.calls.append(record)
        return record

    async def _execute(self, record: ToolCallRecord, call: _PendingCall) -> tuple[str, list[str]]:
        """Run one call; return the text for the model (errors included) and its images, never raise."""
        await self.sink(ToolStartEvent(type="tool_start", **record.fields()))
        if "_raw" in record.arguments or "_value" in record.arguments:
            outcome: Any = _LocalError(
                self.redactor.redact(
                    f"the arguments for {record.name} are not a JSON object: {call.arguments!r}"
                )
            )
        elif record.source == "unknown":
            outcome = _LocalError(f"there is no tool named {record.name!r}; use one of the tools offered")
        elif _takes_progress(self.tools):
            outcome = await self.tools.call(  # type: ignore[call-arg]
                record.name, record.arguments, progress=self._progress(record)
            )
        else:
            outcome = await self.tools.call(record.name, record.arguments)
        record.outcome = outcome
        record.refused = refused = bool(outcome.is_error) and (
            isinstance(outcome, _LocalError) or getattr(outcome, "status", None) in REFUSED_STATUSES
        )
        items = list(outcome.content or [])
        images = (
            contents.model_images(items, limit=contents.MODEL_IMAGES_PER_ROUND)
            if self.accepts_images and not outcome.is_error
            else []
        )
        # Text and embedded text as they are; images, audio and links described (an image the
        # model also gets as an image part is marked "attached below").
        described = contents.text_for_model(items, attached=len(images)) if items else outcome.text()
        text = self.redactor.redact(outcome.text())
        await self.sink(
            ToolEndEvent(
                type="tool_end",
                **record.fields(),
                is_error=outcome.is_error,
                refused=refused,
                text=text,
                duration_ms=outcome.duration_ms,
                content=items,
            )
        )
        for_model = self.redactor.redact(described)
        label = "REFUSED" if refused else "ERROR" if outcome.is_error else ""
        return _for_model(record.number, for_model, label, self.limits.tool_result_max_chars), images

    def _progress(self, record: ToolCallRecord) -> ProgressCallback:
        """A callback that forwards the server's progress for ``record``, at most one per interval.

        Notifications inside an interval are dropped (the next one carries the newer figure), except
        the one that reaches the total; a server that reports 10,000 times a second cannot flood
        the socket. ``message`` is the server's text: redacted and cut here, escaped by the page.
        """
        last_sent = 0.0

        async def forward(progress: float, total: float | None, message: str | None) -> None:
            nonlocal last_sent
            now = time.monotonic()
            done = total is not None and progress >= total
            if now - last_sent < self.limits.progress_interval and not done:
                return
            last_sent = now
            await self.sink(
                ToolProgressEvent(
                    type="tool_progress",
                    call_id=record.call_id,
                    number=record.number,
                    progress=float(progress),
                    total=float(total) if total is not None else None,
                    message=self.redactor.redact(str(message or ""))[:300],
                )
            )

        return forward


@dataclass
class _LocalError:
    """A tool error found before calling anything (bad arguments, unknown tool)."""

    message: str
    content: list[dict[str, Any]] = field(default_factory=list)
    structured_content: Any = None
    is_error: bool = True
    duration_ms: float = 0.0
    status: int = 400

    def __post_init__(self) -> None:
        self.content = [{"type": "text", "text": self.message}]

    def text(self) -> str:
        return self.message


def _function(tool: Any) -> dict[str, Any]:
    schema = dict(tool.input_schema or {})
    schema.setdefault("type", "object")
    schema.setdefault("properties", {})
    return {
        "type": "function",
        "function": {"name": tool.name, "description": (tool.description or "")[:1024], "parameters": schema},
    }


def _assistant_message(text: str, calls: list[_PendingCall]) -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": text or None,
        "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments or "{}"}}
            for c in calls
        ],
    }


def _for_model(number: int, text: str, label: str, budget: int) -> str:
    """The tool result as the model sees it: numbered for citation, truncated past the budget."""
    if len(text) > budget:
        text = f"{text[:budget]}\n[truncated: the model sees {budget} of {len(text)} characters]"
    return f"[{number}] {label}: {text}" if label else f"[{number}] {text}"


def _takes_progress(source: Any) -> bool:
    """True when ``source.call`` accepts a ``progress`` callback (the catalog does, test doubles may not)."""
    try:
        parameters = inspect.signature(source.call).parameters
    except (TypeError, ValueError):
        return False
    return "progress" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def _image_message(records: list[ToolCallRecord], images: list[list[str]]) -> dict[str, Any] | None:
    """One user message with the round's tool images as image parts, or None when there are none."""
    parts: list[dict[str, Any]] = []
    for record, urls in zip(records, images, strict=True):
        if not urls:
            continue
        parts.append(
            {"type": "text", "text": f"Images returned by tool call [{record.number}] {record.name}:"}
        )
        parts += [{"type": "image_url", "image_url": {"url": url}} for url in urls]
    if not parts:
        return None
    return {"role": "user", "content": parts}
