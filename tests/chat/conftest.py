"""Chat fixtures: the scripted LLM on loopback, a registered model pointing at it, demo MCP servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from registry.models import LLMModel, MCPServer
from registry.services import llm_model_save, mcp_servers_check_health
from tests.support.processes import demo_command, demo_env, mcp_demo_server
from tests.support.scripted_llm import ScriptedLLM


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture
def llm_model(llm: ScriptedLLM, db: None) -> LLMModel:
    """The default model: an OpenAI-compatible endpoint served by the scripted LLM."""
    return llm_model_save(
        model=LLMModel(
            name="scripted",
            provider="openai_compatible",
            endpoint=llm.base_url,
            model="gpt-scripted",
            request_timeout=10,
            is_default=True,
        )
    )


def register_http_demo(base_url: str, name: str = "lab") -> MCPServer:
    server = MCPServer.objects.create(name=name, protocol="http", url=base_url + "/mcp")
    outcome = mcp_servers_check_health(servers=[server])[0]
    assert outcome.ok, outcome.error
    return server


def register_stdio_demo(name: str = "lab-stdio", env: dict[str, str] | None = None) -> MCPServer:
    command, *args = demo_command("stdio")
    server = MCPServer.objects.create(
        name=name,
        protocol="stdio",
        command=command,
        args=args,
        env={**demo_env(), **(env or {})},
        health_check="",
    )
    outcome = mcp_servers_check_health(servers=[server])[0]
    assert outcome.ok, outcome.error
    return server


@pytest.fixture
def demo_http(db: None) -> Iterator[MCPServer]:
    with mcp_demo_server("http") as running:
        yield register_http_demo(running.base_url)
