"""The agent loop: stream a chat completion, run the tool calls it asks for, feed results back.

Imports no Django: it takes an OpenAI SDK client, a tool source (the registry's tool catalog in
production) and an event sink, so it can be tested and benchmarked alone. Events go to the sink as
they happen (tokens, tool starts and ends); the partial state (``text``, ``calls``) stays readable
after a cancellation or an error so the caller can keep what was produced.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypedDict

import openai
from openai import AsyncOpenAI

from chat.llm import StreamCut

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
    """The tools on offer and a way to call them; failures come back as ``is_error`` outcomes."""

    def tools(self) -> list[Any]: ...

    async def call(self, name: str, arguments: dict[str, Any], *, timeout: float | None = None) -> Any: ...


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
    text: str
    duration_ms: float


AgentEvent = TokenEvent | ToolStartEvent | ToolEndEvent
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
    text: str = ""
    calls: list[ToolCallRecord] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    async def run(self, messages: Sequence[dict[str, Any]]) -> str:
        """Run to a final answer (or the step limit) and return the full answer text."""
        conversation = list(messages)
        offered = self.tools.tools()
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
                {"role": "tool", "tool_call_id": record.call_id, "content": content}
                for record, content in zip(records, results, strict=True)
            ]
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
                    if delta.content:
                        step_text += delta.content
                        self.text += delta.content
                        await self.sink(TokenEvent(type="token", text=delta.content))
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
                raise StreamCut(f"the connection dropped mid-answer: {exc.__cause__ or exc}") from exc
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
            arguments=arguments if isinstance(arguments, dict) else {"_value": arguments},
        )
        self.calls.append(record)
        return record

    async def _execute(self, record: ToolCallRecord, call: _PendingCall) -> str:
        """Run one call; always return the content for the model (errors included), never raise."""
        await self.sink(ToolStartEvent(type="tool_start", **record.fields()))
        if "_raw" in record.arguments or "_value" in record.arguments:
            outcome: Any = _LocalError(
                f"the arguments for {record.name} are not a JSON object: {call.arguments!r}"
            )
        elif record.source == "unknown":
            outcome = _LocalError(f"there is no tool named {record.name!r}; use one of the tools offered")
        else:
            outcome = await self.tools.call(record.name, record.arguments)
        record.outcome = outcome
        text = outcome.text()
        await self.sink(
            ToolEndEvent(
                type="tool_end",
                **record.fields(),
                is_error=outcome.is_error,
                text=text,
                duration_ms=outcome.duration_ms,
            )
        )
        return _for_model(record.number, text, outcome.is_error, self.limits.tool_result_max_chars)


@dataclass
class _LocalError:
    """A tool error found before calling anything (bad arguments, unknown tool)."""

    message: str
    content: list[dict[str, Any]] = field(default_factory=list)
    structured_content: Any = None
    is_error: bool = True
    duration_ms: float = 0.0

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


def _for_model(number: int, text: str, is_error: bool, budget: int) -> str:
    """The tool result as the model sees it: numbered for citation, truncated past the budget."""
    if len(text) > budget:
        text = f"{text[:budget]}\n[truncated: the model sees {budget} of {len(text)} characters]"
    label = f"[{number}] ERROR: " if is_error else f"[{number}] "
    return label + text
