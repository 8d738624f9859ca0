"""Prove that :class:`ScriptedLLM` is faithful by driving it with the real ``openai`` SDK over real HTTP.

The double is only worth something if the official client cannot tell it from the service: these tests
use ``openai.AsyncOpenAI`` / ``openai.AsyncAzureOpenAI`` (and, for byte-level framing, a raw HTTP
client) and assert what the SDK parses, raises and retries, plus what the server recorded.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import httpx
import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from tests.support.scripted_llm import RecordedRequest, ScriptedLLM, ToolCallSpec, Turn

KEY = "sk-scripted-test-key"
MODEL = "gpt-4o-mini"
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello?"}]


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    """A fresh server per test, so queues and records never leak between tests."""
    with ScriptedLLM(api_key=KEY, deployments={"gpt-4o"}) as server:
        yield server


@pytest.fixture
async def client(llm: ScriptedLLM) -> AsyncIterator[openai.AsyncOpenAI]:
    """The real SDK client with its default retry budget made explicit (2 retries = 3 attempts)."""
    async with openai.AsyncOpenAI(base_url=llm.base_url, api_key=KEY, max_retries=2) as sdk:
        yield sdk


@pytest.fixture
async def azure(llm: ScriptedLLM) -> AsyncIterator[openai.AsyncAzureOpenAI]:
    async with openai.AsyncAzureOpenAI(
        azure_endpoint=llm.azure_endpoint, api_version="2024-10-21", azure_deployment="gpt-4o", api_key=KEY
    ) as sdk:
        yield sdk


async def collect(stream: openai.AsyncStream[ChatCompletionChunk]) -> list[ChatCompletionChunk]:
    return [chunk async for chunk in stream]


async def collect_into(
    stream: openai.AsyncStream[ChatCompletionChunk], into: list[ChatCompletionChunk]
) -> None:
    """Like :func:`collect`, but keeps what arrived before the stream raised."""
    async for chunk in stream:
        into.append(chunk)


def text_of(chunks: Sequence[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def accumulate_tool_calls(chunks: Sequence[ChatCompletionChunk]) -> dict[int, dict[str, str]]:
    """The accumulation every agent loop must do: merge tool-call deltas by ``index``."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        if not chunk.choices:
            continue
        for delta in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            if delta.id:
                entry["id"] = delta.id
            if delta.function is not None:
                entry["name"] += delta.function.name or ""
                entry["arguments"] += delta.function.arguments or ""
    return calls


# --------------------------------------------------------------------------------------------------
# Streaming text
# --------------------------------------------------------------------------------------------------


async def test_streamed_text_reassembles(llm: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    text = "Hello world, the BGP session on edge-1 is established."
    llm.enqueue(Turn.text(text, chunk_size=5))

    chunks = await collect(await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))

    assert text_of(chunks) == text
    first, last = chunks[0], chunks[-1]
    assert first.choices[0].delta.role == "assistant"
    assert first.choices[0].delta.content == ""
    assert last.choices[0].finish_reason == "stop"
    assert last.choices[0].delta.content is None
    assert len({c.id for c in chunks}) == 1
    assert first.id.startswith("chatcmpl-")
    assert all(c.object == "chat.completion.chunk" and c.model == MODEL for c in chunks)
    assert all(c.choices[0].index == 0 and c.choices[0].logprobs is None for c in chunks)
    assert first.system_fingerprint is not None and first.system_fingerprint.startswith("fp_")
    assert all(c.usage is None for c in chunks)

    (request,) = llm.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.body["stream"] is True
    assert request.body["messages"] == MESSAGES
    assert [t for i, _, t in llm.sent_chunks if i == 0 and t] == list(Turn.text(text, chunk_size=5).chunks)


async def test_text_chunks_are_sent_exactly(llm: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    llm.enqueue(Turn.text_chunks(["Grü", "ße, ", "🌐", "!"]))
    chunks = await collect(await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == ["Grü", "ße, ", "🌐", "!"]


async def test_raw_wire_format_matches_openai_sse(llm: ScriptedLLM) -> None:
    """Byte-level check of what the SDK parses: ``data: {json}\\n\\n`` events, compact JSON, field
    order and shapes as the live API sends them, ``usage: null`` on every chunk when asked for usage,
    a final ``choices: []`` usage chunk and ``data: [DONE]``."""
    llm.enqueue(Turn.text("Hi there"))
    body = {"model": MODEL, "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": True}}
    async with (
        httpx.AsyncClient() as raw,
        raw.stream(
            "POST", f"{llm.base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}
        ) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["transfer-encoding"] == "chunked"
        payload = (await response.aread()).decode()

    assert payload.endswith("data: [DONE]\n\n")
    events = payload.split("\n\n")[:-1]
    assert all(e.startswith("data: ") and "\n" not in e for e in events)
    data = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
    assert ", " not in events[0] and '": ' not in events[0]  # compact separators, like OpenAI
    first = data[0]
    assert list(first) == [
        "id",
        "object",
        "created",
        "model",
        "service_tier",
        "system_fingerprint",
        "choices",
        "usage",
        "obfuscation",
    ]
    assert first["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": "", "refusal": None},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    assert data[1]["choices"][0]["delta"] == {"content": "Hi t"}
    assert data[-2]["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]
    assert all(d["usage"] is None for d in data[:-1])
    assert data[-1]["choices"] == []
    assert data[-1]["usage"]["total_tokens"] == data[-1]["usage"]["prompt_tokens"] + 2
    assert isinstance(first["created"], int)


async def test_include_usage_yields_final_usage_chunk(llm: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    llm.enqueue(Turn.text("Four tokens of text"))
    chunks = await collect(
        await client.chat.completions.create(
            model=MODEL,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    *body, final = chunks
    assert final.choices == []
    assert final.usage is not None
    assert final.usage.completion_tokens == 5
    assert final.usage.total_tokens == final.usage.prompt_tokens + final.usage.completion_tokens > 0
    assert all(c.usage is None for c in body)
    assert body[-1].choices[0].finish_reason == "stop"


async def test_slow_stream_is_paced_by_the_server(llm: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    """``delay`` is real network pacing: the SDK receives chunks spread over time, not in one burst."""
    delay = 0.05
    llm.enqueue(Turn.text("one two three four", chunk_size=4, delay=delay))
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    arrivals: list[float] = []
    async for _chunk in stream:
        arrivals.append(time.monotonic())

    assert len(set(arrivals)) >= 3
    assert arrivals[-1] - arrivals[0] > 2 * delay
    spread_gaps = [b - a for a, b in itertools.pairwise(arrivals) if b - a >= delay * 0.7]
    assert len(spread_gaps) >= 3
    sent = [at for _, at, _ in llm.sent_chunks]
    assert sent[-1] - sent[0] >= (len(sent) - 1) * delay * 0.9


# --------------------------------------------------------------------------------------------------
# Tool calls
# --------------------------------------------------------------------------------------------------


async def test_tool_call_arguments_split_across_chunks(llm: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    args = {"device": "edge-1", "interfaces": ["xe-0/0/1", "xe-0/0/2"], "dry_run": True}
    llm.enqueue(Turn.tool_calls([ToolCallSpec("set_interfaces", args)], split=4))

    chunks = await collect(await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))

    deltas = [d for c in chunks for d in (c.choices[0].delta.tool_calls or [])]
    assert len(deltas) == 5  # head + 4 argument pieces
    head = deltas[0]
    assert head.id is not None and head.id.startswith("call_")
    assert head.type == "function"
    assert head.function is not None and head.function.name == "set_interfaces"
    assert head.function.arguments == ""
    assert all(d.id is None and d.function is not None and d.function.name is None for d in deltas[1:])
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "tool_calls"

    calls = accumulate_tool_calls(chunks)
    assert list(calls) == [0]
    assert calls[0]["id"] == head.id
    assert json.loads(calls[0]["arguments"]) == args


async def test_parallel_tool_calls_interleaved_accumulate_by_index(
    llm: ScriptedLLM, client: openai.AsyncOpenAI
) -> None:
    llm.enqueue(
        Turn.tool_calls(
            [
                ToolCallSpec("add", {"a": 1, "b": 2}, id="call_add_1"),
                ToolCallSpec("lookup_device", {"name": "core-sw-01", "site": "ams"}),
            ],
            split=3,
            interleave=True,
            text_before="Let me check.",
        )
    )

    chunks = await collect(await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))

    order = [d.index for c in chunks for d in (c.choices[0].delta.tool_calls or [])]
    assert order == [0, 1, 0, 1, 0, 1, 0, 1]  # genuinely interleaved: naive "last call" merging breaks
    assert text_of(chunks) == "Let me check."
    calls = accumulate_tool_calls(chunks)
    assert calls[0]["id"] == "call_add_1"
    assert calls[0]["name"] == "add"
    assert json.loads(calls[0]["arguments"]) == {"a": 1, "b": 2}
    assert calls[1]["id"].startswith("call_") and calls[1]["id"] != "call_add_1"
    assert calls[1]["name"] == "lookup_device"
    assert json.loads(calls[1]["arguments"]) == {"name": "core-sw-01", "site": "ams"}
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


async def test_responder_scripts_an_agent_loop(client: openai.AsyncOpenAI) -> None:
    """A responder decides from the request: call a tool first, answer once the tool result is in."""

    def responder(body: dict[str, Any]) -> Turn:
        last = body["messages"][-1]
        if last["role"] == "tool":
            return Turn.text(f"The sum is {last['content']}.")
        return Turn.tool_calls([ToolCallSpec("add", {"a": 2, "b": 3}, id="call_add")])

    with ScriptedLLM(responder=responder) as server:
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="any") as sdk:
            messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "2+3?"}]
            first = await collect(
                await sdk.chat.completions.create(model=MODEL, messages=messages, stream=True)
            )
            call = accumulate_tool_calls(first)[0]
            messages += [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["name"], "arguments": call["arguments"]},
                        }
                    ],
                },
                {
                    "role": "tool",
                    "tool_call_id": call["id"],
                    "content": str(sum(json.loads(call["arguments"]).values())),
                },
            ]
            second = await collect(
                await sdk.chat.completions.create(model=MODEL, messages=messages, stream=True)
            )
        assert text_of(second) == "The sum is 5."
        assert server.requests[1].body["messages"][-1]["tool_call_id"] == "call_add"


async def test_default_turn_is_ok(llm: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    chunks = await collect(await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert text_of(chunks) == "OK"


# --------------------------------------------------------------------------------------------------
# Non-streaming
# --------------------------------------------------------------------------------------------------


async def test_non_streaming_text_and_tool_calls(llm: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    llm.enqueue(Turn.text("Plain answer"), Turn.tool_calls([ToolCallSpec("ping", {"host": "10.0.0.1"})]))

    answer = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert answer.object == "chat.completion"
    assert answer.id.startswith("chatcmpl-")
    assert answer.choices[0].message.content == "Plain answer"
    assert answer.choices[0].message.role == "assistant"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and answer.usage.completion_tokens == 3

    calls = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    message = calls.choices[0].message
    assert message.content is None
    assert calls.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    (call,) = message.tool_calls
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "ping"
    assert json.loads(call.function.arguments) == {"host": "10.0.0.1"}


async def test_non_streaming_cut_is_retried_by_the_sdk(llm: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    """A truncated non-streamed body fails inside the SDK's request phase, so it is retried."""
    llm.enqueue(Turn.cut(0, text="abc"), Turn.text("recovered"))
    answer = await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert answer.choices[0].message.content == "recovered"
    assert [r.headers["x-stainless-retry-count"] for r in llm.requests] == ["0", "1"]


# --------------------------------------------------------------------------------------------------
# Azure
# --------------------------------------------------------------------------------------------------


async def test_azure_request_shape(llm: ScriptedLLM, azure: openai.AsyncAzureOpenAI) -> None:
    llm.enqueue(Turn.text("Hello from Azure"))
    chunks = await collect(
        await azure.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
    )
    assert text_of(chunks) == "Hello from Azure"

    (request,) = llm.requests
    assert request.path == "/openai/deployments/gpt-4o/chat/completions"
    assert request.query == {"api-version": "2024-10-21"}
    assert request.headers["api-key"] == KEY
    assert "authorization" not in request.headers


async def test_azure_unknown_deployment_is_404(llm: ScriptedLLM) -> None:
    llm.enqueue(Turn.text("never sent"))
    async with openai.AsyncAzureOpenAI(
        azure_endpoint=llm.azure_endpoint,
        api_version="2024-10-21",
        azure_deployment="gpt-5-nope",
        api_key=KEY,
    ) as sdk:
        with pytest.raises(openai.NotFoundError) as caught:
            await sdk.chat.completions.create(model="gpt-5-nope", messages=MESSAGES)
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "DeploymentNotFound"
    assert llm.pending == 1  # the server's own rejection consumes no turn


async def test_azure_missing_api_version_is_400(llm: ScriptedLLM) -> None:
    async with httpx.AsyncClient() as raw:
        response = await raw.post(
            f"{llm.azure_endpoint}openai/deployments/gpt-4o/chat/completions",
            json={"messages": MESSAGES},
            headers={"api-key": KEY},
        )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "MissingApiVersionParameter"


async def test_azure_prompt_filter_chunk_is_parsed() -> None:
    """Azure with content filtering starts the stream with a ``choices: []`` chunk; opt-in quirk."""
    with ScriptedLLM(azure_prompt_filter_chunk=True) as server:
        server.enqueue(Turn.text("filtered ok"))
        async with openai.AsyncAzureOpenAI(
            azure_endpoint=server.azure_endpoint, api_version="2024-10-21", api_key="k"
        ) as sdk:
            chunks = await collect(
                await sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
            )
    assert chunks[0].choices == []
    assert text_of(chunks) == "filtered ok"
    assert server.requests[0].path == "/openai/deployments/gpt-4o/chat/completions"


# --------------------------------------------------------------------------------------------------
# Errors and retries
# --------------------------------------------------------------------------------------------------


async def test_wrong_key_is_authentication_error(llm: ScriptedLLM) -> None:
    llm.enqueue(Turn.text("never sent"))
    async with openai.AsyncOpenAI(base_url=llm.base_url, api_key="sk-wrong-key-123456") as sdk:
        with pytest.raises(openai.AuthenticationError) as caught:
            await sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"
    assert caught.value.type == "invalid_request_error"
    assert len(llm.requests) == 1  # 401 is not retried
    assert llm.pending == 1


async def test_azure_wrong_key_is_authentication_error(llm: ScriptedLLM) -> None:
    async with openai.AsyncAzureOpenAI(
        azure_endpoint=llm.azure_endpoint, api_version="2024-10-21", azure_deployment="gpt-4o", api_key="bad"
    ) as sdk:
        with pytest.raises(openai.AuthenticationError):
            await sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES)


async def test_rate_limit_beyond_retries_raises(llm: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    llm.enqueue(Turn.error(429, "Rate limit reached", retry_after=0, repeat=5))
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    assert len(llm.requests) == client.max_retries + 1 == 3
    assert [r.headers["x-stainless-retry-count"] for r in llm.requests] == ["0", "1", "2"]
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "0"
    assert llm.pending == 2


async def test_rate_limit_then_success_is_retried_by_sdk(
    llm: ScriptedLLM, client: openai.AsyncOpenAI
) -> None:
    llm.enqueue(Turn.error(429, retry_after=0), Turn.text("after the retry"))
    chunks = await collect(await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    assert text_of(chunks) == "after the retry"
    assert len(llm.requests) == 2


async def test_fractional_retry_after_is_honoured(llm: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    """Retry-After 0 falls back to >= 0.375 s backoff; a small positive value is obeyed instead."""
    llm.enqueue(Turn.error(429, retry_after=0.02), Turn.text("quick"))
    started = time.monotonic()
    await client.chat.completions.create(model=MODEL, messages=MESSAGES)
    requests = llm.requests
    assert requests[1].received_at - requests[0].received_at < 0.3
    assert time.monotonic() - started < 1.0


async def test_server_error_is_internal_server_error(llm: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    llm.enqueue(Turn.error(500, retry_after=0.01, repeat=3))
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    assert caught.value.status_code == 500
    assert caught.value.type == "server_error"
    assert len(llm.requests) == 3


async def test_invalid_requests_are_rejected_without_consuming_turns(llm: ScriptedLLM) -> None:
    llm.enqueue(Turn.text("kept"))
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {KEY}"}) as raw:
        no_messages = await raw.post(f"{llm.base_url}/chat/completions", json={"model": MODEL})
        bad_options = await raw.post(
            f"{llm.base_url}/chat/completions",
            json={"model": MODEL, "messages": MESSAGES, "stream_options": {"include_usage": True}},
        )
        unknown = await raw.get(f"{llm.base_url}/models")
    assert no_messages.status_code == 400
    assert no_messages.json()["error"]["param"] == "messages"
    assert bad_options.status_code == 400
    assert unknown.status_code == 404
    assert unknown.json()["error"]["message"] == "Invalid URL (GET /v1/models)"
    assert llm.pending == 1
    assert len(llm.requests) == 3


# --------------------------------------------------------------------------------------------------
# Broken and abandoned streams
# --------------------------------------------------------------------------------------------------


async def test_cut_stream_raises_api_connection_error(llm: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    llm.enqueue(Turn.cut(after_chunks=3, text="The interface xe-0/0/1 is"))
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    received: list[ChatCompletionChunk] = []
    with pytest.raises(openai.APIConnectionError) as caught:
        await collect_into(stream, received)
    assert type(caught.value) is openai.APIConnectionError
    assert isinstance(caught.value.__cause__, httpx2.RemoteProtocolError)
    assert text_of(received) == "The interfac"  # role chunk + 3 four-character chunks arrived first
    assert all(c.choices[0].finish_reason is None for c in received)
    assert len(llm.requests) == 1  # not retried: the 200 response had already been returned
    assert llm.disconnects == 0  # the server cut it, the client did not leave


async def test_closing_stream_early_disconnects_upstream(
    llm: ScriptedLLM, client: openai.AsyncOpenAI
) -> None:
    llm.enqueue(Turn.hang_after(4))
    stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    seen = 0
    async for _chunk in stream:
        seen += 1
        if seen == 2:
            break
    assert llm.disconnects == 0
    await stream.close()
    assert await llm.wait_for_disconnects(1, timeout=2.0) == 1


async def test_completed_stream_is_not_counted_as_disconnect(
    llm: ScriptedLLM, client: openai.AsyncOpenAI
) -> None:
    llm.enqueue(Turn.text("done"), Turn.text("again"))
    for _ in range(2):
        await collect(await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    await client.close()
    await asyncio.sleep(0.2)
    assert llm.disconnects == 0


async def test_stop_ends_a_hanging_stream_promptly() -> None:
    server = ScriptedLLM().start()
    try:
        server.enqueue(Turn.hang_after(1))
        async with openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0) as sdk:
            stream = await sdk.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
            await stream.__anext__()
            started = time.monotonic()
            await asyncio.to_thread(server.stop)
            assert time.monotonic() - started < 5
            with pytest.raises(openai.APIConnectionError):
                await collect(stream)
    finally:
        server.stop()
    assert server.disconnects == 0


# --------------------------------------------------------------------------------------------------
# Concurrency
# --------------------------------------------------------------------------------------------------


async def test_concurrent_requests_and_threaded_enqueue(llm: ScriptedLLM, client: openai.AsyncOpenAI) -> None:
    """Turns enqueued from several threads are each served exactly once to concurrent streams."""
    texts = [f"answer number {i}" for i in range(8)]
    threads = [threading.Thread(target=llm.enqueue, args=(Turn.text(t, delay=0.01),)) for t in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    async def ask() -> str:
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        return text_of(await collect(stream))

    answers = await asyncio.gather(*(ask() for _ in texts))
    assert sorted(answers) == sorted(texts)
    assert llm.pending == 0
    requests: list[RecordedRequest] = llm.requests
    assert len(requests) == 8
    assert {i for i, _, _ in llm.sent_chunks} == set(range(8))
