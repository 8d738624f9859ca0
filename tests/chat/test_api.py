"""Chat REST API: POST /api/chat/ (JSON and SSE) and the caller's own conversations."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import AsyncClient, Client
from rest_framework.authtoken.models import Token

from chat.models import Conversation, Message, MessageStatus
from chat.services import conversation_create, message_finish, message_start
from registry.models import LLMModel, MCPServer
from tests.support.scripted_llm import ScriptedLLM, ToolCallSpec, Turn

pytestmark = pytest.mark.django_db(transaction=True)


@sync_to_async
def _token(name: str = "alice") -> tuple[User, str]:
    user = User.objects.create_user(name, password="pw-for-tests-1")
    return user, Token.objects.create(user=user).key


class _Api:
    """An async client sending the token with every request.

    AsyncClient(headers=...) turns default headers into WSGI names that ASGI requests drop
    (Django's CVE-2026-3902 fix), so headers are passed per request.
    """

    def __init__(self, token: str | None) -> None:
        self.client = AsyncClient()
        self.headers = {"Authorization": f"Token {token}"} if token else {}

    async def post(
        self, path: str, data: str, content_type: str, headers: dict[str, str] | None = None
    ) -> Any:
        return await self.client.post(
            path, data=data, content_type=content_type, headers={**self.headers, **(headers or {})}
        )


def _client(token: str | None) -> _Api:
    return _Api(token)


async def _post(client: _Api, body: Any, headers: dict[str, str] | None = None) -> Any:
    return await client.post(
        "/api/chat/", data=json.dumps(body), content_type="application/json", headers=headers
    )


async def test_chat_answers_with_tool_calls_and_citations(
    llm: ScriptedLLM, llm_model: LLMModel, demo_http: MCPServer
) -> None:
    llm.enqueue(
        Turn.tool_calls([ToolCallSpec("add", {"a": 20, "b": 22})]), Turn.text("The answer is 42 [1].")
    )
    _, token = await _token()
    response = await _post(_client(token), {"message": "What is 20+22?"})
    assert response.status_code == 200
    body = response.json()
    assert body["response"] == "The answer is 42 [1]."
    assert body["status"] == "complete"
    assert body["model"] == "scripted"
    assert body["tool_calls"][0]["tool"] == "add"
    assert body["tool_calls"][0]["arguments"] == {"a": 20, "b": 22}
    assert body["tool_calls"][0]["result"] == "42"
    assert body["citations"] == [
        {"number": 1, "tool": "add", "source": "lab", "arguments": {"a": 20, "b": 22}}
    ]
    conversation = await Conversation.objects.aget(pk=body["conversation_id"])
    assert await conversation.messages.acount() == 2


async def test_same_history_when_continuing_a_conversation(llm: ScriptedLLM, llm_model: LLMModel) -> None:
    llm.enqueue(Turn.text("Hello Alice."), Turn.text("You are Alice."))
    _, token = await _token()
    client = _client(token)
    first = (await _post(client, {"message": "I am Alice."})).json()
    second = await _post(client, {"message": "Who am I?", "conversation_id": first["conversation_id"]})
    assert second.json()["response"] == "You are Alice."
    history = llm.requests[1].body["messages"]
    assert [m["role"] for m in history] == ["system", "user", "assistant", "user"]
    assert history[1]["content"] == "I am Alice." and history[2]["content"] == "Hello Alice."


async def test_event_stream_sends_the_same_events(
    llm: ScriptedLLM, llm_model: LLMModel, demo_http: MCPServer
) -> None:
    llm.enqueue(
        Turn.tool_calls([ToolCallSpec("add", {"a": 1, "b": 2})]), Turn.text("It is 3 [1].", chunk_size=2)
    )
    _, token = await _token()
    response = await _post(_client(token), {"message": "1+2?"}, headers={"Accept": "text/event-stream"})
    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    raw = b"".join([chunk async for chunk in response.streaming_content]).decode()
    events = [
        (
            block.split("\n")[0].removeprefix("event: "),
            json.loads(block.split("\n")[1].removeprefix("data: ")),
        )
        for block in raw.strip().split("\n\n")
    ]
    kinds = [kind for kind, _ in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert kinds.index("tool_start") < kinds.index("tool_end") < kinds.index("token")
    assert "".join(data["text"] for kind, data in events if kind == "token") == "It is 3 [1]."
    assert events[-1][1]["response"] == "It is 3 [1]."
    assert events[-1][1]["citations"][0]["tool"] == "add"


async def test_model_and_servers_can_be_chosen_per_request(
    llm: ScriptedLLM, llm_model: LLMModel, demo_http: MCPServer
) -> None:
    llm.enqueue(Turn.text("no tools"))
    await sync_to_async(LLMModel.objects.create)(
        name="other", provider="openai_compatible", endpoint=llm.base_url, model="gpt-other"
    )
    _, token = await _token()
    body = (await _post(_client(token), {"message": "hi", "model": "other", "servers": []})).json()
    assert body["model"] == "other"
    assert llm.requests[0].body["model"] == "gpt-other"
    assert "tools" not in llm.requests[0].body  # no servers chosen: no tools offered


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "message"),
        ({"message": ""}, "message"),
        ({"message": "hi", "conversation_id": "not-a-uuid"}, "conversation_id"),
        ({"message": "hi", "servers": "lab"}, "servers"),
        ({"message": "hi", "model": "nonexistent"}, "model"),
        ({"message": "hi", "servers": ["ghost"]}, "servers"),
    ],
)
async def test_bad_input_is_400_naming_the_field(
    llm_model: LLMModel, body: dict[str, Any], field: str
) -> None:
    _, token = await _token()
    response = await _post(_client(token), body)
    assert response.status_code == 400
    assert response.json()["error"].startswith(f"{field}:")


async def test_invalid_json_is_400(llm_model: LLMModel) -> None:
    _, token = await _token()
    response = await _client(token).post("/api/chat/", data="{nope", content_type="application/json")
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["error"]


async def test_no_token_is_401_and_bad_token_is_401(llm_model: LLMModel) -> None:
    response = await _post(_client(None), {"message": "hi"})
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    response = await _post(_client("0" * 40), {"message": "hi"})
    assert response.status_code == 401


async def test_another_users_conversation_is_404(llm_model: LLMModel) -> None:
    alice, _ = await _token("alice")
    _, mallory_token = await _token("mallory")
    conversation = await sync_to_async(conversation_create)(user=alice)
    response = await _post(_client(mallory_token), {"message": "hi", "conversation_id": str(conversation.pk)})
    assert response.status_code == 404
    assert await Message.objects.filter(conversation=conversation).acount() == 0


async def test_llm_down_is_a_clear_error_and_the_conversation_keeps_the_question(
    llm: ScriptedLLM, llm_model: LLMModel
) -> None:
    llm.enqueue(Turn.error(500, repeat=3))
    _, token = await _token()
    response = await _post(_client(token), {"message": "status of AMS?"})
    assert response.status_code == 502
    body = response.json()
    assert "failed with HTTP 500" in body["error"]
    question = await Message.objects.aget(conversation_id=body["conversation_id"], role="user")
    assert question.content == "status of AMS?"


async def test_no_model_is_503(db: None) -> None:
    _, token = await _token()
    response = await _post(_client(token), {"message": "hi"})
    assert response.status_code == 503
    assert "No LLM model is configured" in response.json()["error"]


def _seed_conversation(user: User) -> Conversation:
    conversation = conversation_create(user=user)
    _, answer = message_start(conversation=conversation, text="Which VLANs at AMS01?", model_name="scripted")

    class _Outcome:
        content = [{"type": "text", "text": '{"vlans": [100, 200]}'}]
        structured_content = {"vlans": [100, 200]}
        is_error = False
        duration_ms = 12.5

    class _Call:
        call_id, number, name, source = "call_1", 1, "netbox_get_vlans", "netbox"
        arguments = {"site": "AMS01"}
        outcome = _Outcome()

    message_finish(
        message=answer,
        text="VLANs 100 and 200 [1].",
        status=MessageStatus.COMPLETE,
        citations=[
            {"number": 1, "tool": "netbox_get_vlans", "source": "netbox", "arguments": {"site": "AMS01"}}
        ],
        calls=[_Call()],
    )
    return conversation


def test_conversation_list_detail_delete_and_exports(make_user: Any, token_client: Any) -> None:
    alice, mallory = make_user("alice"), make_user("mallory")
    conversation = _seed_conversation(alice)
    _seed_conversation(mallory)
    api = token_client(alice)

    listing = api.get("/api/conversations/").json()
    assert listing["count"] == 1
    assert listing["results"][0]["title"] == "Which VLANs at AMS01?"

    detail = api.get(f"/api/conversations/{conversation.pk}/").json()
    assert [m["role"] for m in detail["messages"]] == ["user", "assistant"]
    assert detail["messages"][1]["tool_calls"][0]["result"] == '{"vlans": [100, 200]}'

    exported = api.get(f"/api/conversations/{conversation.pk}/export/json/")
    data = json.loads(exported.content)
    assert data["messages"][1]["tool_calls"][0]["arguments"] == {"site": "AMS01"}
    assert data["messages"][1]["citations"][0]["tool"] == "netbox_get_vlans"
    assert data["messages"][1]["model"] == "scripted"
    markdown = api.get(f"/api/conversations/{conversation.pk}/export/md/").content.decode()
    assert "# Which VLANs at AMS01?" in markdown
    assert "**Tool call [1]** `netbox_get_vlans` on netbox" in markdown
    assert '"site": "AMS01"' in markdown and '{"vlans": [100, 200]}' in markdown
    assert "**Sources**" in markdown
    assert api.get(f"/api/conversations/{conversation.pk}/export/pdf/").status_code == 404

    other = Conversation.objects.get(user=mallory)
    assert api.get(f"/api/conversations/{other.pk}/").status_code == 404
    assert api.delete(f"/api/conversations/{other.pk}/").status_code == 404
    assert api.delete(f"/api/conversations/{conversation.pk}/").status_code == 204
    assert not Conversation.objects.filter(pk=conversation.pk).exists()
    assert Conversation.objects.filter(pk=other.pk).exists()
    assert token_client(None).get("/api/conversations/").status_code == 401


def test_session_clients_need_csrf(make_user: Any, llm_model: LLMModel) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(make_user("alice"))
    response = client.post("/api/chat/", data=json.dumps({"message": "hi"}), content_type="application/json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["error"]


def test_plugin_path_alias(make_user: Any, token_client: Any) -> None:
    response = token_client(make_user("alice")).post("/plugins/ai-ops/api/chat/", {}, format="json")
    assert response.status_code == 400
    assert response.json()["error"].startswith("message:")
