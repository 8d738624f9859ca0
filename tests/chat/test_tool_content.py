"""What the model and the engineer see of a tool call: images, links, refused calls, the tool bound.

Real parts: the npm reference server ``server-everything`` over stdio (its ``get-tiny-image`` and
``get-resource-links``), the repo's demo MCP server, the scripted LLM over real HTTP, the real
openai SDK.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from django.test import Client, override_settings

from chat import content as contents
from chat import fragments
from chat.agent import Agent, AgentEvent, AgentLimits
from chat.llm import make_client
from chat.models import Conversation, Message, MessageStatus, ToolCall
from chat.services import conversation_configure, conversation_create, message_finish, message_start
from chat.toolbudget import TooManyTools, tool_budget
from registry.catalog import ToolCatalog
from registry.models import LLMModel, MCPServer
from registry.services import mcp_servers_check_health
from tests.chat.conftest import register_http_demo
from tests.chat.test_agent import QUESTION, _settings
from tests.support.npm_everything import everything_command
from tests.support.processes import mcp_demo_server
from tests.support.scripted_llm import ScriptedLLM, ToolCallSpec, Turn

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
PNG_B64 = base64.b64encode(PNG).decode()


def register_everything(name: str = "everything") -> MCPServer:
    command, *args = everything_command()
    server = MCPServer.objects.create(
        name=name, protocol="stdio", command=command, args=args, health_check=""
    )
    outcome = mcp_servers_check_health(servers=[server])[0]
    assert outcome.ok, outcome.error
    return server


async def _agent_run(
    llm: ScriptedLLM, catalog: Any, *, accepts_images: bool = False, limits: AgentLimits | None = None
) -> tuple[Agent, list[AgentEvent]]:
    events: list[AgentEvent] = []

    async def sink(event: AgentEvent) -> None:
        events.append(event)

    config = _settings(llm)
    client = make_client(config)
    agent = Agent(
        client=client,
        model=config.model,
        tools=catalog,
        sink=sink,
        accepts_images=accepts_images,
        limits=limits or AgentLimits(),
    )
    try:
        await agent.run(QUESTION)
    finally:
        await client.close()
    return agent, events


# --- content items in words and for cards (no network) -----------------------------------------


def test_items_are_described_for_a_model_without_image_input() -> None:
    items = [
        {"type": "text", "text": "the graph:"},
        {
            "type": "image",
            "data": base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 14_000).decode(),
            "mimeType": "image/png",
        },
        {"type": "audio", "data": base64.b64encode(b"0" * 3000).decode(), "mimeType": "audio/wav"},
        {"type": "resource_link", "uri": "https://example.net/r/1", "name": "report"},
        {
            "type": "resource",
            "resource": {"uri": "file:///etc/motd", "text": "hello", "mimeType": "text/plain"},
        },
    ]
    assert contents.text_for_model(items).splitlines() == [
        "the graph:",
        "[image: image/png, 14 KB]",
        "[audio: audio/wav, 3 KB]",
        "[resource link: report <https://example.net/r/1>]",
        "[resource file:///etc/motd]",
        "hello",
    ]


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (
            {
                "type": "image",
                "mimeType": "image/svg+xml",
                "data": base64.b64encode(b"<svg onload=alert(1)>").decode(),
            },
            "not shown",
        ),
        (
            {"type": "image", "mimeType": "text/html", "data": base64.b64encode(b"<script>").decode()},
            "not shown",
        ),
        (
            {"type": "image", "mimeType": "image/png", "data": base64.b64encode(b"<html><script>").decode()},
            "not a image/png",
        ),
        ({"type": "image", "mimeType": "image/png", "data": "!!not base64!!"}, "not valid base64"),
        (
            {"type": "image", "mimeType": "image/png", "data": "A" * (contents.IMAGE_MAX_BYTES * 4 // 3 + 8)},
            "too large",
        ),
    ],
)
def test_images_that_are_not_safe_rasters_are_refused_with_a_reason(
    item: dict[str, Any], reason: str
) -> None:
    decoded = contents.decode_image(item)
    assert isinstance(decoded, str) and reason in decoded
    (card,) = contents.card_items([item])
    assert card.kind == "note" and reason in card.note


def test_links_are_links_only_for_http_and_https() -> None:
    items = contents.card_items(
        [
            {"type": "resource_link", "uri": "https://example.net/a", "name": "a"},
            {"type": "resource_link", "uri": "javascript:alert(1)", "name": "b"},
            {"type": "resource_link", "uri": "data:text/html,<script>", "name": "c"},
            {"type": "resource_link", "uri": "file:///etc/passwd", "name": "d"},
        ]
    )
    assert [(i.label, i.href) for i in items] == [
        ("a", "https://example.net/a"),
        ("b", ""),
        ("c", ""),
        ("d", ""),
    ]


def test_tool_budget_names_the_smallest_fix() -> None:
    class T:
        def __init__(self, source: str, kind: str = "server") -> None:
            self.source, self.source_kind = source, kind

    tools = [T("netbox", "builtin")] * 30 + [T("big")] * 90 + [T("mid")] * 40 + [T("small")] * 10
    budget = tool_budget(tools, limit=128)
    assert budget.exceeded and budget.total == 170
    assert [(s.source, s.count) for s in budget.deselect] == [("big", 90)]  # 42 too many: only big covers it
    # 35 too many: mid (40) alone is enough and loses fewer tools than big.
    assert [s.source for s in tool_budget(tools, limit=135).deselect] == ["mid"]
    # 105 too many: no single server covers it; the biggest first until it fits.
    assert [s.source for s in tool_budget(tools, limit=65).deselect] == ["big", "mid"]
    message = budget.message()
    assert "170 tools" in message and "at most 128" in message
    assert "big (90 tools), mid (40 tools), small (10 tools)" in message
    assert "netbox" not in message  # built-in tools cannot be deselected
    assert not tool_budget(tools[:128], limit=128).exceeded


# --- the agent with real servers ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("accepts_images", [False, True])
def test_an_image_tool_reaches_the_model_as_image_parts_or_a_description(
    llm: ScriptedLLM, accepts_images: bool
) -> None:
    register_everything()
    llm.enqueue(Turn.tool_calls([ToolCallSpec("get-tiny-image", {})]), Turn.text("A tiny image [1]."))
    _, events = asyncio.run(_agent_run(llm, ToolCatalog.load(), accepts_images=accepts_images))

    (end,) = [e for e in events if e["type"] == "tool_end"]
    assert not end["is_error"] and not end["refused"]
    assert [item["type"] for item in end["content"]].count("image") == 1
    messages = llm.requests[1].body["messages"]
    tool_message = next(m for m in messages if m["role"] == "tool")
    assert tool_message["content"] != "[1] "
    assert "[image: image/png, " in tool_message["content"]
    if not accepts_images:
        assert messages[-1] is tool_message or messages[-1]["role"] == "tool"
        assert "data:image" not in json.dumps(messages)
        return
    assert "(attached below)" in tool_message["content"]
    follow = messages[-1]
    assert follow["role"] == "user" and isinstance(follow["content"], list)
    assert follow["content"][0] == {
        "type": "text",
        "text": "Images returned by tool call [1] get-tiny-image:",
    }
    url = follow["content"][1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]).startswith(b"\x89PNG")


@pytest.mark.django_db(transaction=True)
def test_arguments_that_fail_the_schema_are_refused_naming_the_field_and_never_sent(
    llm: ScriptedLLM,
) -> None:
    with mcp_demo_server("http") as running:
        register_http_demo(running.base_url)
        llm.enqueue(
            Turn.tool_calls(
                [ToolCallSpec("add", {"a": "two", "b": 3}), ToolCallSpec("add", {"a": 1, "b": 2})]
            ),
            Turn.text("The first call was refused."),
        )
        agent, events = asyncio.run(_agent_run(llm, ToolCatalog.load()))

    ends = {e["number"]: e for e in events if e["type"] == "tool_end"}
    assert ends[1]["refused"] and ends[1]["is_error"]
    assert not ends[2]["refused"] and ends[2]["text"] == "3"
    assert agent.calls[0].refused and agent.calls[0].outcome.status == 400
    results = [m["content"] for m in llm.requests[1].body["messages"] if m["role"] == "tool"]
    assert results[0].startswith("[1] REFUSED: ")
    assert results[0] == "[1] REFUSED: a: 'two' is not of type 'integer'"  # the field and the rule
    assert results[1] == "[2] 3"
    # Never sent: the demo server would have answered with its own (pydantic) error, and took time.
    assert "validation error" not in results[0].lower()
    assert agent.calls[0].outcome.duration_ms < 1000


@pytest.mark.django_db(transaction=True)
def test_the_agent_refuses_a_tool_list_longer_than_one_request_carries(llm: ScriptedLLM) -> None:
    with mcp_demo_server("http") as running:
        register_http_demo(running.base_url)
        catalog = ToolCatalog.load(builtins=False)
        with pytest.raises(TooManyTools) as refused:
            asyncio.run(_agent_run(llm, catalog, limits=AgentLimits(max_tools=len(catalog) - 1)))
    assert "lab (" in str(refused.value)
    assert llm.requests == []  # the provider was never asked


# --- the page and the image view --------------------------------------------------------------


def _stored_call(
    user: Any, content: list[dict[str, Any]], *, refused: bool = False
) -> tuple[Conversation, ToolCall]:
    from chat.agent import ToolCallRecord
    from registry.connections import ToolCallOutcome

    conversation = conversation_create(user=user)
    _, answer = message_start(conversation=conversation, text="show me", model_name="m")
    record = ToolCallRecord(call_id="c1", number=1, name="graph", source="lab", arguments={})
    record.outcome = ToolCallOutcome(
        content=content, structured_content=None, is_error=refused, duration_ms=3.0
    )
    record.refused = refused
    message_finish(message=answer, text="Here [1].", status=MessageStatus.COMPLETE, calls=[record])
    return conversation, ToolCall.objects.get(message=answer)


def _client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_card_shows_images_from_netops_own_view_and_only_web_links(make_user: Any) -> None:
    user = make_user("alice")
    conversation, call = _stored_call(
        user,
        [
            {"type": "text", "text": "CPU graph"},
            {"type": "image", "data": PNG_B64, "mimeType": "image/png"},
            {
                "type": "image",
                "data": base64.b64encode(b"<svg onload=alert(1)/>").decode(),
                "mimeType": "image/svg+xml",
            },
            {"type": "resource_link", "uri": "https://grafana.example.net/d/1", "name": "dashboard"},
            {"type": "resource_link", "uri": "javascript:alert(document.cookie)", "name": "evil"},
        ],
    )
    page = _client(user).get(f"/chat/{conversation.pk}/").content.decode()
    url = f"/chat/{conversation.pk}/calls/{call.pk}/content/1/"
    assert f'<img src="{url}"' in page
    assert "data:image" not in page and PNG_B64 not in page
    assert "images of type image/svg+xml are not shown" in page
    assert '<a href="https://grafana.example.net/d/1"' in page
    assert 'href="javascript:' not in page and "javascript:alert(document.cookie)" in page  # as text


@pytest.mark.django_db
def test_image_view_serves_safe_bytes_to_the_owner_only(make_user: Any) -> None:
    owner, other = make_user("alice"), make_user("mallory")
    conversation, call = _stored_call(
        owner,
        [
            {"type": "image", "data": PNG_B64, "mimeType": "image/png"},
            {
                "type": "image",
                "data": base64.b64encode(b"<svg onload=alert(1)/>").decode(),
                "mimeType": "image/svg+xml",
            },
            {"type": "text", "text": "not an image"},
        ],
    )
    base = f"/chat/{conversation.pk}/calls/{call.pk}/content"
    response = _client(owner).get(f"{base}/0/")
    assert response.status_code == 200
    assert response.content == PNG
    assert response["Content-Type"] == "image/png"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Content-Disposition"].startswith("inline;")
    assert "default-src 'none'" in response["Content-Security-Policy"]
    assert "sandbox" in response["Content-Security-Policy"]
    assert _client(owner).get(f"{base}/1/").status_code == 404  # SVG never served
    assert _client(owner).get(f"{base}/2/").status_code == 404  # not an image
    assert _client(owner).get(f"{base}/9/").status_code == 404
    assert _client(other).get(f"{base}/0/").status_code == 404  # someone else's conversation
    anonymous = Client().get(f"{base}/0/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")


@pytest.mark.django_db
def test_a_refused_call_is_shown_as_refused_not_as_a_failure(make_user: Any) -> None:
    user = make_user("alice")
    conversation, _ = _stored_call(
        user, [{"type": "text", "text": "a: 'two' is not of type 'integer'"}], refused=True
    )
    page = _client(user).get(f"/chat/{conversation.pk}/").content.decode()
    assert "status-refused" in page and "Refused — the tool was not called" in page
    assert "status-error" not in page


def test_progress_fragment_is_escaped_and_determinate_only_with_a_total() -> None:
    known = fragments.tool_progress(
        7,
        {"number": 2, "status": "running", "progress": {"progress": 3, "total": 5, "message": "<b>step</b>"}},
    )
    assert 'id="tc-7-2-progress"' in known and 'hx-swap-oob="true"' in known
    assert '<progress value="3" max="5"' in known
    assert "&lt;b&gt;step&lt;/b&gt;" in known and "<b>" not in known
    unknown = fragments.tool_progress(
        7, {"number": 2, "status": "running", "progress": {"progress": 40, "total": None, "message": ""}}
    )
    assert "<progress aria-label" in unknown and "value=" not in unknown


# --- too many tools: page, picker, REST -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_too_many_tools_is_said_in_the_picker_and_refused_by_the_api_naming_the_field(
    make_user: Any, llm: ScriptedLLM, llm_model: LLMModel
) -> None:
    user = make_user("alice")
    with mcp_demo_server("http") as one, mcp_demo_server("http", "--tools", "6") as two:
        first = register_http_demo(one.base_url, name="lab")
        second = register_http_demo(two.base_url, name="lab-big")
        conversation = conversation_create(user=user)
        fits = len(ToolCatalog.load(server_ids=[first.pk]))
        with override_settings(LLM_MAX_TOOLS=fits):
            client = _client(user)
            page = client.get(f"/chat/{conversation.pk}/").content.decode()
            assert "Too many tools:" in page and "lab-big" in page
            saved = client.post(
                f"/chat/{conversation.pk}/settings/", {"servers": [str(first.pk)]}
            ).content.decode()
            assert "Saved" in saved and 'id="tool-budget"' in saved and "Too many tools" not in saved
            saved = client.post(
                f"/chat/{conversation.pk}/settings/", {"servers": [str(first.pk), str(second.pk)]}
            ).content.decode()
            assert "Too many tools:" in saved and "<strong>lab-big</strong>" in saved

            response = client.post(
                "/api/chat/",
                data=json.dumps({"message": "hi", "conversation_id": str(conversation.pk)}),
                content_type="application/json",
            )
            assert response.status_code == 400
            body = response.json()
            assert body["code"] == "too_many_tools"
            assert "lab-big (" in body["errors"]["servers"][0] and "lab (" in body["errors"]["servers"][0]
            assert llm.requests == []
            assert not Message.objects.filter(conversation=conversation).exists()  # nothing stored

            conversation_configure(conversation=conversation, llm_model_id=None, server_ids=[first.pk])
            llm.enqueue(Turn.text("fine"))
            response = client.post(
                "/api/chat/",
                data=json.dumps({"message": "hi", "conversation_id": str(conversation.pk)}),
                content_type="application/json",
            )
            assert response.status_code == 200, response.content
            assert len(llm.requests[0].body["tools"]) <= fits
