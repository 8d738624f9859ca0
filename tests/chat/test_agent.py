"""The agent loop against the scripted LLM (real openai SDK, real HTTP) and real MCP servers."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import openai
import pytest

from chat.agent import Agent, AgentEvent, AgentLimits
from chat.llm import LLMSettings, StreamCut, describe_llm_error, make_client
from registry.catalog import ToolCatalog
from registry.models import MCPServer
from tests.chat.conftest import register_http_demo, register_stdio_demo
from tests.support.processes import mcp_demo_server
from tests.support.scripted_llm import ScriptedLLM, ToolCallSpec, Turn

QUESTION = [
    {"role": "system", "content": "sys"},
    {"role": "user", "content": "Is et-0/0/1 up on r1, and 2+3?"},
]


def _settings(llm: ScriptedLLM, **overrides: Any) -> LLMSettings:
    values: dict[str, Any] = {
        "name": "scripted",
        "provider": "openai_compatible",
        "model": "gpt-x",
        "endpoint": llm.base_url,
    }
    values.update(overrides)
    return LLMSettings(**values)


async def _run(
    llm: ScriptedLLM, catalog: Any, *, limits: AgentLimits | None = None, **settings: Any
) -> tuple[Agent, list[AgentEvent], str]:
    events: list[AgentEvent] = []

    async def sink(event: AgentEvent) -> None:
        events.append(event)

    config = _settings(llm, **settings)
    client = make_client(config)
    agent = Agent(client=client, model=config.model, tools=catalog, sink=sink, limits=limits or AgentLimits())
    try:
        text = await agent.run(QUESTION)
    finally:
        await client.close()
    return agent, events, text


def _two_calls_then_answer(llm: ScriptedLLM) -> None:
    llm.enqueue(
        Turn.tool_calls(
            [
                ToolCallSpec("get_interface_status", {"device": "r1", "interface": "et-0/0/1"}),
                ToolCallSpec("add", {"a": 2, "b": 3}),
            ],
            split=4,
            interleave=True,
            text_before="Let me check. ",
        ),
        Turn.text("et-0/0/1 on r1 is up at 10G [1], and 2+3 is 5 [2].", chunk_size=4),
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_question_needing_two_tool_calls_gives_both_cards_and_a_cited_answer(
    llm: ScriptedLLM, transport: str
) -> None:
    _two_calls_then_answer(llm)
    if transport == "http":
        with mcp_demo_server("http") as running:
            register_http_demo(running.base_url)
            agent, events, text = asyncio.run(_run(llm, ToolCatalog.load()))
    else:
        register_stdio_demo()
        agent, events, text = asyncio.run(_run(llm, ToolCatalog.load()))

    assert text == "Let me check. et-0/0/1 on r1 is up at 10G [1], and 2+3 is 5 [2]."
    starts = [e for e in events if e["type"] == "tool_start"]
    ends = [e for e in events if e["type"] == "tool_end"]
    assert [(e["number"], e["name"]) for e in starts] == [(1, "get_interface_status"), (2, "add")]
    assert {e["number"]: e["is_error"] for e in ends} == {1: False, 2: False}
    assert json.loads(next(e for e in ends if e["number"] == 1)["text"])["oper_status"] == "up"
    assert next(e for e in ends if e["number"] == 2)["text"] == "5"
    tokens = [e["text"] for e in events if e["type"] == "token"]
    assert len(tokens) > 5  # streamed in pieces, not at once
    assert agent.citations() == [
        {
            "number": 1,
            "tool": "get_interface_status",
            "source": "lab" if transport == "http" else "lab-stdio",
            "arguments": {"device": "r1", "interface": "et-0/0/1"},
        },
        {
            "number": 2,
            "tool": "add",
            "source": "lab" if transport == "http" else "lab-stdio",
            "arguments": {"a": 2, "b": 3},
        },
    ]
    # The second request fed both results back, numbered for citation, after the assistant's calls.
    second = llm.requests[1].body["messages"]
    assistant = second[-3]
    assert assistant["role"] == "assistant"
    assert [c["function"]["name"] for c in assistant["tool_calls"]] == ["get_interface_status", "add"]
    tool_messages = second[-2:]
    assert [m["role"] for m in tool_messages] == ["tool", "tool"]
    assert tool_messages[0]["tool_call_id"] == assistant["tool_calls"][0]["id"]
    assert tool_messages[0]["content"].startswith("[1] ")
    assert tool_messages[1]["content"] == "[2] 5"
    # Tools were offered as OpenAI functions with their schemas.
    offered = {t["function"]["name"]: t for t in llm.requests[0].body["tools"]}
    assert offered["add"]["function"]["parameters"]["required"] == ["a", "b"]


@pytest.mark.django_db(transaction=True)
def test_parallel_tool_calls_run_concurrently(llm: ScriptedLLM, demo_http: MCPServer) -> None:
    llm.enqueue(
        Turn.tool_calls(
            [
                ToolCallSpec("slow_echo", {"text": "a", "seconds": 1}),
                ToolCallSpec("slow_echo", {"text": "b", "seconds": 1}),
            ]
        ),
        Turn.text("done"),
    )
    started = time.monotonic()
    agent, _, _ = asyncio.run(_run(llm, ToolCatalog.load()))
    elapsed = time.monotonic() - started
    assert [c.outcome.text() for c in agent.calls] == ["a", "b"]
    assert elapsed < 1.9, f"two 1 s calls took {elapsed:.2f} s: not concurrent"


@pytest.mark.django_db(transaction=True)
def test_tool_errors_and_bad_calls_go_back_to_the_model(llm: ScriptedLLM, demo_http: MCPServer) -> None:
    llm.enqueue(
        Turn.tool_calls(
            [
                ToolCallSpec("fail", {"reason": "device unreachable"}),
                ToolCallSpec("no_such_tool", {}),
                ToolCallSpec("add", '{"a": 1, "b":'),
            ]
        ),
        Turn.text("All three failed."),
    )
    agent, _, text = asyncio.run(_run(llm, ToolCatalog.load()))
    assert text == "All three failed."
    assert [c.outcome.is_error for c in agent.calls] == [True, True, True]
    results = [m["content"] for m in llm.requests[1].body["messages"] if m["role"] == "tool"]
    assert results[0].startswith("[1] ERROR: ") and "device unreachable" in results[0]
    assert "no tool named 'no_such_tool'" in results[1]
    assert "not a JSON object" in results[2]


@pytest.mark.django_db(transaction=True)
def test_large_tool_results_are_truncated_for_the_model_only(llm: ScriptedLLM, demo_http: MCPServer) -> None:
    llm.enqueue(
        Turn.tool_calls([ToolCallSpec("slow_echo", {"text": "x" * 5000, "seconds": 0})]), Turn.text("long")
    )
    agent, events, _ = asyncio.run(
        _run(llm, ToolCatalog.load(), limits=AgentLimits(tool_result_max_chars=1000))
    )
    to_model = next(m["content"] for m in llm.requests[1].body["messages"] if m["role"] == "tool")
    assert len(to_model) < 1200
    assert "[truncated: the model sees 1000 of 5000 characters]" in to_model
    end = next(e for e in events if e["type"] == "tool_end")
    assert len(end["text"]) == 5000  # the page keeps the whole result
    assert agent.calls[0].outcome.text() == "x" * 5000


@pytest.mark.django_db(transaction=True)
def test_step_limit_forces_a_text_answer(llm: ScriptedLLM, demo_http: MCPServer) -> None:
    llm.enqueue(
        Turn.tool_calls([ToolCallSpec("add", {"a": 1, "b": 1})]),
        Turn.tool_calls([ToolCallSpec("add", {"a": 2, "b": 2})]),
        Turn.text("Stopping here."),
    )
    agent, _, text = asyncio.run(_run(llm, ToolCatalog.load(), limits=AgentLimits(max_steps=2)))
    assert text == "Stopping here."
    assert len(agent.calls) == 2
    assert llm.requests[2].body["tool_choice"] == "none"
    assert "tool_choice" not in llm.requests[0].body


@pytest.mark.django_db(transaction=True)
def test_stop_mid_tool_call_cancels_it_on_the_mcp_server(llm: ScriptedLLM, tmp_path: Path) -> None:
    marker = tmp_path / "cancelled"
    with mcp_demo_server("http", env={"CANCEL_MARKER": str(marker)}) as running:
        register_http_demo(running.base_url)
        llm.enqueue(Turn.tool_calls([ToolCallSpec("slow_echo", {"text": "traceroute", "seconds": 30})]))

        catalog = ToolCatalog.load()

        async def scenario() -> Agent:
            events: list[AgentEvent] = []
            started = asyncio.Event()

            async def sink(event: AgentEvent) -> None:
                events.append(event)
                if event["type"] == "tool_start":
                    started.set()

            client = make_client(_settings(llm))
            agent = Agent(client=client, model="gpt-x", tools=catalog, sink=sink)
            task = asyncio.create_task(agent.run(QUESTION))
            await asyncio.wait_for(started.wait(), 10)
            await asyncio.sleep(0.5)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await client.close()
            return agent

        agent = asyncio.run(scenario())
        for _ in range(50):
            if marker.exists():
                break
            time.sleep(0.1)
    assert marker.read_text() == "cancelled:traceroute"
    assert agent.calls[0].outcome is None  # it never finished


def test_stop_mid_stream_closes_the_llm_stream(llm: ScriptedLLM) -> None:
    llm.enqueue(
        Turn.hang_after(3, text="Checking the core routers one by one and then the WAN", chunk_size=5)
    )

    async def scenario() -> Agent:
        got_tokens = asyncio.Event()

        async def sink(event: AgentEvent) -> None:
            if event["type"] == "token":
                got_tokens.set()

        client = make_client(_settings(llm))
        agent = Agent(client=client, model="gpt-x", tools=_NoTools(), sink=sink)
        task = asyncio.create_task(agent.run(QUESTION))
        await asyncio.wait_for(got_tokens.wait(), 5)
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.close()
        return agent

    agent = asyncio.run(scenario())
    assert agent.text == "Checking the co"  # three 5-character chunks: the partial answer is kept
    deadline = time.monotonic() + 3
    while llm.disconnects < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert llm.disconnects == 1


class _NoTools:
    def tools(self) -> list[Any]:
        return []

    async def call(self, name: str, arguments: dict[str, Any], *, timeout: float | None = None) -> Any:
        raise AssertionError("no tools")


def test_stream_cut_mid_answer_is_a_stream_cut(llm: ScriptedLLM) -> None:
    llm.enqueue(Turn.cut(after_chunks=2, text="The core router ams-cor001 is", chunk_size=6))
    with pytest.raises(StreamCut) as caught:
        asyncio.run(_run(llm, _NoTools()))
    message = describe_llm_error(caught.value, _settings(llm))
    assert "cut off mid-stream" in message


@pytest.mark.parametrize(
    ("turn", "expected"),
    [
        (Turn.error(401), "refused the API key (401)"),
        (Turn.error(429, retry_after=0.01, repeat=3), "rate limiting requests (429) after 2 retries"),
        (Turn.error(500, repeat=3), "failed with HTTP 500"),
    ],
)
def test_llm_errors_become_readable_messages(llm: ScriptedLLM, turn: Turn, expected: str) -> None:
    llm.enqueue(turn)
    with pytest.raises(openai.APIError) as caught:
        asyncio.run(_run(llm, _NoTools()))
    assert expected in describe_llm_error(caught.value, _settings(llm))


def test_unreachable_llm_is_a_readable_bounded_error() -> None:
    settings = LLMSettings(
        name="gone",
        provider="openai_compatible",
        model="m",
        endpoint="http://127.0.0.1:9/v1",
        timeout=2,
        max_retries=0,
    )
    client = make_client(settings)

    async def call() -> None:
        agent = Agent(client=client, model="m", tools=_NoTools(), sink=_ignore)
        await agent.run(QUESTION)

    started = time.monotonic()
    with pytest.raises(openai.APIConnectionError) as caught:
        asyncio.run(call())
    assert time.monotonic() - started < 5
    assert "Cannot reach the model gone at 127.0.0.1:9" in describe_llm_error(caught.value, settings)


async def _ignore(event: AgentEvent) -> None:
    return None


def test_azure_client_uses_the_deployment_url_and_api_version() -> None:
    with ScriptedLLM(api_key="azure-key-123", deployments={"gpt-4o-prod"}) as llm:
        llm.enqueue(Turn.text("hello from azure"))
        settings = LLMSettings(
            name="azure",
            provider="azure_openai",
            model="gpt-4o-prod",
            endpoint=llm.azure_endpoint,
            api_version="2024-10-21",
            api_key="azure-key-123",
        )
        client = make_client(settings)

        async def call() -> str:
            agent = Agent(client=client, model=settings.model, tools=_NoTools(), sink=_ignore)
            try:
                return await agent.run(QUESTION)
            finally:
                await client.close()

        assert asyncio.run(call()) == "hello from azure"
        request = llm.requests[0]
    assert request.path == "/openai/deployments/gpt-4o-prod/chat/completions"
    assert request.query["api-version"] == "2024-10-21"
    assert request.headers["api-key"] == "azure-key-123"
