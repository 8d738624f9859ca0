"""Input that gave a 500 (or a bodiless 400) gives a clear 400, or an error frame on a socket that stays.

One test per input class and face: NUL (PostgreSQL refuses it in text and jsonb), lone surrogates
(``"\\udcff"`` decodes from JSON but cannot be encoded as UTF-8), JSON nested 100000 levels
(RecursionError), numbers beyond what the database or the calendar holds, an unknown model id,
malformed multipart bodies. Each checks the status, a body that names the field or the problem, and
that nothing was lost or half-written. Run on SQLite and on PostgreSQL (``DATABASE_URL``): NUL only
fails on PostgreSQL, so the PostgreSQL run is the one that proves those holes closed.

Also here: ``POST /api/chat/`` with a browser session (CSRF token: 200; without: 403; it was a 415
for every session request), and what a NUL in the tool arguments an LLM chooses does to the answer.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import AsyncClient, Client
from rest_framework.test import APIClient

from chat.models import Conversation, Message, MessageStatus, ToolCall
from chat.services import conversation_create, conversation_rename
from netops.asgi import application
from registry.catalog import BuiltinProvider, BuiltinTool, CallContext, register_provider, unregister_provider
from registry.keys import api_key_create
from registry.models import APIKey, LLMModel, MCPServer, ToolCallAudit
from registry.services import llm_model_save
from tests.support.scripted_llm import ScriptedLLM, ToolCallSpec, Turn

pytestmark = pytest.mark.django_db(transaction=True)

NUL = "a\u0000b"
SURROGATE = "a\udcffb"
DEEP = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"message": ' + "[" * 100_000 + "]" * 100_000 + "}"

# Bodies as raw JSON text (json.dumps escapes both as \u0000 / \udcff, as a hostile client would).
TEXT_CLASSES = {"nul": NUL, "surrogate": SURROGATE}


def _error_body(response: Any) -> dict[str, Any]:
    assert response["Content-Type"].startswith("application/json"), response.content[:300]
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    return body


def _names(body: dict[str, Any], *words: str) -> None:
    text = json.dumps(body).lower()
    assert any(word.lower() in text for word in words), (words, body)


# --- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture
def admin_api(make_user: Callable[..., User], token_client: Callable[[User | None], APIClient]) -> APIClient:
    return token_client(make_user("root", superuser=True))


@pytest.fixture
def server() -> MCPServer:
    return MCPServer.objects.create(name="lab", protocol="http", url="http://127.0.0.1:9/mcp", args=["keep"])


@pytest.fixture
def echo_tool() -> Iterator[list[dict[str, Any]]]:
    """A built-in tool that records the arguments it is called with."""
    calls: list[dict[str, Any]] = []

    async def handler(arguments: dict[str, Any], context: CallContext) -> Any:
        calls.append(arguments)
        return {"echo": arguments.get("text")}

    schema = {"type": "object", "properties": {"text": {"type": "string"}}}
    tool = BuiltinTool("bad_echo", "echo", schema, handler, annotations={"readOnlyHint": True})
    register_provider(BuiltinProvider(source="badinput", tools=lambda: [tool]))
    yield calls
    unregister_provider("badinput")


@pytest.fixture
def gateway_key(make_user: Callable[..., User]) -> str:
    _, plain = api_key_create(owner=make_user("automation"), name="ci", level="read_only")
    return plain


@pytest.fixture
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture
def llm_model(llm: ScriptedLLM) -> LLMModel:
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


# --- query strings and paths (every filter) ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("/api/llm-models/?name=a%00b", "name"),
        ("/api/mcp-servers/?name=a%00b", "name"),
        ("/api/mcp-servers/?status=%00", "status"),
        ("/api/change-requests/?requester=a%00b", "requester"),
        ("/api/change-requests/?object_type=%00", "object_type"),
        ("/api/conversations/?page=%00", "page"),
        ("/api/llm-models/a%00b/", "path"),
    ],
)
def test_nul_in_a_query_parameter_or_path_is_400_naming_it(
    admin_api: APIClient, url: str, field: str
) -> None:
    response = admin_api.get(url)
    assert response.status_code == 400
    body = _error_body(response)
    assert field in body["errors"], body
    _names(body, "NUL")


def test_nul_in_a_page_query_is_an_html_400(make_user: Callable[..., User]) -> None:
    client = Client()
    client.force_login(make_user("alice"))
    response = client.get("/changes/?requester=a%00b")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert b"NUL" in response.content and b"requester" in response.content


# --- REST bodies (DRF) ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["nul", "surrogate"])
def test_unstorable_text_in_a_json_field_is_400_naming_it(
    admin_api: APIClient, server: MCPServer, kind: str
) -> None:
    """``args`` is a jsonb column: NUL there was a PostgreSQL error (500), a surrogate an encoding one."""
    body = json.dumps({"args": ["ok", TEXT_CLASSES[kind]]})
    response = admin_api.patch(f"/api/mcp-servers/{server.pk}/", body, content_type="application/json")
    assert response.status_code == 400
    error = _error_body(response)
    assert "args[1]" in error["errors"], error
    server.refresh_from_db()
    assert server.args == ["keep"]


def test_deeply_nested_json_on_the_rest_api_is_400(admin_api: APIClient, server: MCPServer) -> None:
    response = admin_api.patch(f"/api/mcp-servers/{server.pk}/", DEEP, content_type="application/json")
    assert response.status_code == 400
    _names(_error_body(response), "nested")
    assert MCPServer.objects.filter(pk=server.pk, args=["keep"]).exists()


@pytest.mark.parametrize("path", ["/api/llm-models/", "/api/mcp-servers/"])
def test_malformed_multipart_on_the_api_is_a_json_400_saying_so(admin_api: APIClient, path: str) -> None:
    response = admin_api.generic(
        "POST",
        path,
        "--zzz\r\nContent-Disposition: form-data\r\n\r\nbroken",
        "multipart/form-data; boundary=",
    )
    assert response.status_code == 400
    _names(_error_body(response), "could not be parsed")


def test_malformed_multipart_on_a_page_is_an_html_400_saying_so(make_user: Callable[..., User]) -> None:
    client = Client()
    client.force_login(make_user("alice"))
    response = client.generic(
        "POST", "/registry/keys/", b"--zzz\r\nbroken", content_type="multipart/form-data; boundary="
    )
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    assert b"could not be parsed" in response.content


# --- the tool gateway ----------------------------------------------------------------------------------


async def _gateway(key: str, name: str, raw: str) -> Any:
    return await AsyncClient().post(
        f"/api/mcp/tools/{name}",
        data=raw,
        content_type="application/json",
        headers={"Authorization": f"Bearer {key}"},
    )


@pytest.mark.parametrize("kind", ["nul", "surrogate"])
async def test_unstorable_text_in_a_tool_argument_is_400_naming_it(
    echo_tool: list[dict[str, Any]], gateway_key: str, kind: str
) -> None:
    response = await _gateway(gateway_key, "bad_echo", json.dumps({"text": TEXT_CLASSES[kind]}))
    assert response.status_code == 400
    error = _error_body(response)["error"]
    assert error.startswith("text:"), error
    assert echo_tool == []
    statuses = [row.status async for row in ToolCallAudit.objects.all()]
    assert statuses == [400]  # audited, the audit row itself storable


async def test_nul_in_a_tool_name_is_400(echo_tool: list[dict[str, Any]], gateway_key: str) -> None:
    response = await _gateway(gateway_key, "bad%00echo", "{}")
    assert response.status_code == 400
    _names(_error_body(response), "NUL")
    assert echo_tool == []


async def test_deeply_nested_tool_arguments_are_400(
    echo_tool: list[dict[str, Any]], gateway_key: str
) -> None:
    response = await _gateway(gateway_key, "bad_echo", '{"text": ' + DEEP + "}")
    assert response.status_code == 400
    _names(_error_body(response), "nested")
    assert echo_tool == []
    assert await ToolCallAudit.objects.filter(status=400).acount() == 1


# --- POST /api/chat/ -----------------------------------------------------------------------------------


@sync_to_async
def _token_user(name: str = "alice") -> tuple[User, str, Conversation]:
    from rest_framework.authtoken.models import Token

    user = User.objects.create_user(name, password="pw-for-tests-1")
    conversation = conversation_create(user=user)
    conversation_rename(conversation=conversation, title="kept")
    return user, Token.objects.create(user=user).key, conversation


@pytest.mark.parametrize(
    ("kind", "body", "words"),
    [
        ("nul", '{"message": "a\\u0000b"}', ("message", "NUL")),
        ("surrogate", '{"message": "a\\udcffb"}', ("message", "surrogate")),
        ("deep", DEEP_OBJECT, ("nested",)),
        ("deep-array", DEEP, ("nested",)),
    ],
)
async def test_bad_chat_bodies_are_400_and_the_conversation_is_kept(
    llm_model: LLMModel, kind: str, body: str, words: tuple[str, ...]
) -> None:
    _, token, conversation = await _token_user()
    with_id = body if kind.startswith("deep") else body[:-1] + f', "conversation_id": "{conversation.pk}"}}'
    response = await AsyncClient().post(
        "/api/chat/",
        data=with_id,
        content_type="application/json",
        headers={"Authorization": f"Token {token}"},
    )
    assert response.status_code == 400, response.content[:300]
    _names(_error_body(response), *words)
    assert await Conversation.objects.filter(pk=conversation.pk, title="kept").aexists()
    assert await Message.objects.acount() == 0


async def _session_client(name: str = "browser") -> tuple[AsyncClient, str]:
    user = await sync_to_async(User.objects.create_user)(name, password="pw-for-tests-1")
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(user)
    page = await client.get("/chat/")  # a page sets the CSRF cookie, as in a browser
    assert page.status_code == 200
    return client, client.cookies["csrftoken"].value


async def test_chat_api_with_a_session_and_the_csrf_token_answers(
    llm: ScriptedLLM, llm_model: LLMModel
) -> None:
    llm.enqueue(Turn.text("Hello from the session."))
    client, csrf = await _session_client()
    response = await client.post(
        "/api/chat/",
        data=json.dumps({"message": "hi"}),
        content_type="application/json",
        headers={"X-CSRFToken": csrf},
    )
    assert response.status_code == 200, response.content[:300]
    assert response.json()["response"] == "Hello from the session."


async def test_chat_api_with_a_session_but_no_csrf_token_is_403(
    llm: ScriptedLLM, llm_model: LLMModel
) -> None:
    client, _ = await _session_client()
    response = await client.post(
        "/api/chat/", data=json.dumps({"message": "hi"}), content_type="application/json"
    )
    assert response.status_code == 403
    _names(_error_body(response), "CSRF")
    assert await Message.objects.acount() == 0
    assert llm.requests == []


# --- the chat websocket ---------------------------------------------------------------------------------


@sync_to_async
def _session_and_conversation() -> tuple[str, Conversation]:
    user = User.objects.create_user("alice", password="pw-for-tests-1")
    client = Client()
    client.force_login(user)
    conversation = conversation_create(user=user)
    conversation_rename(conversation=conversation, title="kept")
    return client.cookies["sessionid"].value, conversation


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        ('{"action": "send", "message": "a\\u0000b"}', ("NUL",)),
        ('{"action": "send", "message": "a\\udcffb"}', ("surrogate",)),
        ('{"action": "send", "message": "x", "\\u0000": 1}', ("NUL",)),
        (DEEP, ("nested",)),
    ],
    ids=["nul", "surrogate", "nul-key", "deep"],
)
async def test_bad_frames_get_an_error_frame_and_the_socket_stays_usable(
    llm: ScriptedLLM, llm_model: LLMModel, frame: str, words: tuple[str, ...]
) -> None:
    session, conversation = await _session_and_conversation()
    socket = WebsocketCommunicator(
        application,
        f"/ws/chat/{conversation.pk}/",
        headers=[
            (b"origin", b"http://localhost"),
            (b"host", b"localhost"),
            (b"cookie", f"sessionid={session}".encode()),
        ],
    )
    connected, _ = await socket.connect()
    assert connected
    await socket.receive_from(timeout=5)  # the latest answer (none) and the idle indicator
    try:
        await socket.send_to(text_data=frame)
        error = await socket.receive_from(timeout=5)
        assert "toast-error" in error and any(word in error for word in words), error
        # Still usable: a normal message runs to its answer on the same socket.
        llm.enqueue(Turn.text("still here"))
        await socket.send_to(text_data=json.dumps({"action": "send", "message": "hello"}))
        frames = [await socket.receive_from(timeout=10)]
        while 'data-state="idle"' not in frames[-1]:
            frames.append(await socket.receive_from(timeout=10))
        assert "still here" in "".join(frames)
    finally:
        await socket.disconnect()
    stored = [m.content async for m in Message.objects.filter(conversation=conversation).order_by("id")]
    assert stored == ["hello", "still here"]  # the refused frame left nothing behind
    assert await Conversation.objects.filter(pk=conversation.pk, title="kept").aexists()


# --- pages: API keys, chat settings, rename -------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("rate_limit", "9" * 30),
        ("rate_limit", str(2**31)),
        ("expires_in_days", "9" * 30),
        ("expires_in_days", str(10**6)),
    ],
)
def test_huge_numbers_in_the_api_key_form_are_a_form_error(
    make_user: Callable[..., User], field: str, value: str
) -> None:
    user = make_user("alice")
    kept, _ = api_key_create(owner=user, name="kept", level="read_only")
    client = Client()
    client.force_login(user)
    response = client.post("/registry/keys/", {"name": "new", "level": "read_only", field: value})
    assert response.status_code == 400
    assert field in response.content.decode() and "less than or equal" in response.content.decode()
    assert list(APIKey.objects.values_list("name", flat=True)) == ["kept"]
    assert APIKey.objects.filter(pk=kept.pk, revoked=False).exists()


def test_an_unknown_model_in_the_chat_settings_is_400_naming_the_field(
    make_user: Callable[..., User], llm_model: LLMModel
) -> None:
    user = make_user("alice")
    conversation = conversation_create(user=user)
    conversation.llm_model = llm_model
    conversation.save()
    client = Client()
    client.force_login(user)
    response = client.post(
        f"/chat/{conversation.pk}/settings/", {"model": str(uuid.uuid4()), "all_servers": "1"}
    )
    assert response.status_code == 400
    assert "model" in response.content.decode()
    conversation.refresh_from_db()
    assert conversation.llm_model_id == llm_model.pk


@pytest.mark.parametrize("path", ["rename", "settings"])
def test_nul_in_a_page_form_is_400_and_changes_nothing(make_user: Callable[..., User], path: str) -> None:
    user = make_user("alice")
    conversation = conversation_create(user=user)
    conversation_rename(conversation=conversation, title="kept")
    client = Client()
    client.force_login(user)
    response = client.post(f"/chat/{conversation.pk}/{path}/", {"title": NUL, "model": NUL})
    assert response.status_code == 400
    assert b"NUL" in response.content
    conversation.refresh_from_db()
    assert conversation.title == "kept"


# --- a NUL in the tool arguments the LLM chooses ----------------------------------------------------------


async def test_a_nul_in_llm_chosen_tool_arguments_does_not_leave_the_answer_running(
    require_postgres: None, llm: ScriptedLLM, llm_model: LLMModel, echo_tool: list[dict[str, Any]]
) -> None:
    llm.enqueue(Turn.tool_calls([ToolCallSpec("bad_echo", {"text": NUL})]), Turn.text("done"))
    _, token, _ = await _token_user()
    response = await AsyncClient().post(
        "/api/chat/",
        data=json.dumps({"message": "echo it"}),
        content_type="application/json",
        headers={"Authorization": f"Token {token}"},
    )
    answer = await Message.objects.filter(role="assistant").alast()
    assert answer is not None
    assert answer.status != MessageStatus.RUNNING
    assert response.status_code == 200, response.content[:300]
    call = await ToolCall.objects.aget(message=answer)
    assert "\x00" not in json.dumps(call.arguments)
