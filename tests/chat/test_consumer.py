"""The chat websocket through ``netops.asgi.application`` (origin check, session auth, real runs)."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from chat.models import Conversation, Message, MessageStatus
from chat.services import conversation_create
from netops.asgi import application
from registry.models import LLMModel, MCPServer
from tests.support.scripted_llm import ScriptedLLM, ToolCallSpec, Turn

TOKEN = re.compile(r'<div id="m(\d+)-text" hx-swap-oob="beforeend">(.*?)</div>', re.S)
pytestmark = pytest.mark.django_db(transaction=True)


@sync_to_async
def _user_and_conversation(name: str = "alice") -> tuple[str, Conversation]:
    user = User.objects.create_user(name, password="pw-for-tests-1")
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value, conversation_create(user=user)


def _socket(
    conversation_id: Any, session: str | None, origin: str = "http://localhost"
) -> WebsocketCommunicator:
    headers = [(b"origin", origin.encode()), (b"host", b"localhost")]
    if session:
        headers.append((b"cookie", f"sessionid={session}".encode()))
    return WebsocketCommunicator(application, f"/ws/chat/{conversation_id}/", headers=headers)


async def _frames_until(
    socket: WebsocketCommunicator, done: Callable[[str], bool], timeout: float = 15
) -> list[str]:
    frames: list[str] = []
    while True:
        frame = await socket.receive_from(timeout=timeout)
        frames.append(frame)
        if done(frame):
            return frames


def _finished(frame: str) -> bool:
    return 'data-state="idle"' in frame and "msg-assistant" in frame


def _tokens(frames: list[str]) -> str:
    return "".join(html.unescape(text) for frame in frames for _, text in TOKEN.findall(frame))


async def _connect(conversation_id: Any, session: str) -> tuple[WebsocketCommunicator, str]:
    socket = _socket(conversation_id, session)
    connected, _ = await socket.connect()
    assert connected
    first = await socket.receive_from(timeout=5)
    return socket, first


async def test_tokens_arrive_in_order_and_end_with_sanitised_markdown(
    llm: ScriptedLLM, llm_model: LLMModel
) -> None:
    answer = "| device | state |\n|---|---|\n| ams-cor001 | up |\n\n<script>alert(1)</script> **done**"
    llm.enqueue(Turn.text(answer, chunk_size=3, delay=0.005))
    session, conversation = await _user_and_conversation()
    socket, first = await _connect(conversation.pk, session)
    assert 'data-state="idle"' in first

    await socket.send_to(text_data=json.dumps({"message": "Status of the core?", "action": "send"}))
    frames = await _frames_until(socket, _finished)
    await socket.disconnect()

    assert "Status of the core?" in frames[0] and 'data-state="running"' in frames[0]
    assert _tokens(frames) == answer
    assert len([f for f in frames if TOKEN.search(f)]) > 3  # several frames, not one piece
    final = frames[-1]
    assert "<table>" in final and "<strong>done</strong>" in final
    assert "<script>" not in final and "&lt;script&gt;" in final  # model HTML is text, never markup
    message = await Message.objects.aget(conversation=conversation, role="assistant")
    assert message.status == MessageStatus.COMPLETE
    assert message.content == answer
    assert message.model_name == "scripted"
    assert llm.requests[0].body["messages"][-1] == {"role": "user", "content": "Status of the core?"}


async def test_tool_cards_start_and_fill_in(
    llm: ScriptedLLM, llm_model: LLMModel, demo_http: MCPServer
) -> None:
    llm.enqueue(
        Turn.tool_calls([ToolCallSpec("get_interface_status", {"device": "r1", "interface": "et-0/0/1"})]),
        Turn.text("It is up [1]."),
    )
    session, conversation = await _user_and_conversation()
    socket, _ = await _connect(conversation.pk, session)
    await socket.send_to(text_data=json.dumps({"message": "Is et-0/0/1 up?"}))
    frames = await _frames_until(socket, _finished)
    await socket.disconnect()

    joined = "".join(frames)
    assert 'class="tool-card status-running"' in joined
    assert 'class="tool-card status-ok"' in joined
    assert "oper_status" in joined
    assert "Sources" in frames[-1] and "get_interface_status" in frames[-1]
    message = await Message.objects.aget(conversation=conversation, role="assistant")
    assert message.citations[0]["tool"] == "get_interface_status"
    assert await message.tool_calls.acount() == 1


async def test_stop_keeps_the_partial_answer_and_closes_the_llm_stream(
    llm: ScriptedLLM, llm_model: LLMModel
) -> None:
    llm.enqueue(Turn.hang_after(4, text="Looking at every branch router in EMEA now", chunk_size=4))
    session, conversation = await _user_and_conversation()
    socket, _ = await _connect(conversation.pk, session)
    await socket.send_to(text_data=json.dumps({"message": "Check EMEA"}))
    frames: list[str] = []
    text = ""
    while len(text) < 16:
        frame = await socket.receive_from(timeout=5)
        frames.append(frame)
        text = _tokens(frames)
    await socket.send_to(text_data=json.dumps({"action": "stop"}))
    frames += await _frames_until(socket, _finished)
    await socket.disconnect()

    assert "stopped" in frames[-1]
    message = await Message.objects.aget(conversation=conversation, role="assistant")
    assert message.status == MessageStatus.STOPPED
    assert message.content == "Looking at every"
    for _ in range(40):
        if llm.disconnects:
            break
        await asyncio.sleep(0.05)
    assert llm.disconnects == 1


async def test_reconnect_mid_stream_resumes_and_sees_the_end(llm: ScriptedLLM, llm_model: LLMModel) -> None:
    answer = " ".join(f"word{i}" for i in range(60))
    llm.enqueue(Turn.text(answer, chunk_size=6, delay=0.02))
    session, conversation = await _user_and_conversation()
    first_tab, _ = await _connect(conversation.pk, session)
    await first_tab.send_to(text_data=json.dumps({"message": "Long answer please"}))
    seen: list[str] = []
    while len(_tokens(seen)) < 60:
        seen.append(await first_tab.receive_from(timeout=5))
    await first_tab.disconnect()  # a dropped connection / refresh

    second_tab, snapshot = await _connect(conversation.pk, session)
    assert 'class="msg-text streaming"' in snapshot and 'data-state="running"' in snapshot
    resumed = html.unescape(re.search(r'class="msg-text streaming">(.*?)</div>', snapshot, re.S).group(1))
    assert answer.startswith(resumed) and len(resumed) >= 60
    frames = await _frames_until(second_tab, _finished)
    await second_tab.disconnect()
    assert resumed + _tokens(frames) == answer  # nothing lost, nothing doubled
    message = await Message.objects.aget(conversation=conversation, role="assistant")
    assert message.content == answer


async def test_second_tab_follows_a_running_answer(llm: ScriptedLLM, llm_model: LLMModel) -> None:
    answer = "alpha beta gamma delta epsilon zeta eta theta"
    llm.enqueue(Turn.text(answer, chunk_size=5, delay=0.03))
    session, conversation = await _user_and_conversation()
    tab_a, _ = await _connect(conversation.pk, session)
    tab_b, _ = await _connect(conversation.pk, session)
    await tab_a.send_to(text_data=json.dumps({"message": "Greek?"}))
    frames_a = await _frames_until(tab_a, _finished)
    frames_b = await _frames_until(tab_b, _finished)
    await tab_a.disconnect()
    await tab_b.disconnect()
    assert _tokens(frames_a) == answer
    assert "Greek?" in frames_b[0]
    assert _tokens(frames_b) == answer


async def test_another_users_conversation_is_refused(llm_model: LLMModel) -> None:
    _, conversation = await _user_and_conversation("alice")
    mallory_session, _ = await _user_and_conversation("mallory")
    socket = _socket(conversation.pk, mallory_session)
    connected, code = await socket.connect()
    assert not connected
    assert code == 4403


async def test_anonymous_and_foreign_origin_are_refused(llm_model: LLMModel) -> None:
    session, conversation = await _user_and_conversation()
    anonymous = _socket(conversation.pk, None)
    connected, code = await anonymous.connect()
    assert not connected and code == 4401
    foreign = _socket(conversation.pk, session, origin="https://evil.example.com")
    connected, _ = await foreign.connect()
    assert not connected


async def test_garbage_frames_get_an_error_and_the_socket_stays_usable(
    llm: ScriptedLLM, llm_model: LLMModel
) -> None:
    llm.enqueue(Turn.text("still here"))
    session, conversation = await _user_and_conversation()
    socket, _ = await _connect(conversation.pk, session)
    for garbage in ["not json", "[1, 2]", json.dumps({"action": "launch"}), json.dumps({"message": "   "})]:
        await socket.send_to(text_data=garbage)
        frame = await socket.receive_from(timeout=5)
        assert 'class="toast toast-error"' in frame
    await socket.send_to(text_data=json.dumps({"message": "hello?"}))
    frames = await _frames_until(socket, _finished)
    await socket.disconnect()
    assert _tokens(frames) == "still here"


async def test_no_model_configured_is_said_in_the_chat(db: None) -> None:
    session, conversation = await _user_and_conversation()
    socket, _ = await _connect(conversation.pk, session)
    await socket.send_to(text_data=json.dumps({"message": "anyone there?"}))
    frames = await _frames_until(socket, _finished)
    await socket.disconnect()
    assert "No LLM model is configured" in frames[-1]
    message = await Message.objects.aget(conversation=conversation, role="assistant")
    assert message.status == MessageStatus.ERROR
    assert await Message.objects.filter(conversation=conversation, role="user").acount() == 1  # question kept


@pytest.mark.parametrize(
    ("turns", "expected"),
    [
        ([Turn.error(401)], "refused the API key (401)"),
        ([Turn.error(429, retry_after=0.01, repeat=3)], "rate limiting requests (429)"),
        ([Turn.error(500, repeat=3)], "failed with HTTP 500"),
        ([Turn.cut(after_chunks=2, text="The answer is cut", chunk_size=4)], "cut off mid-stream"),
    ],
)
async def test_llm_failures_show_in_the_chat(
    llm: ScriptedLLM, llm_model: LLMModel, turns: list[Turn], expected: str
) -> None:
    llm.enqueue(*turns)
    session, conversation = await _user_and_conversation()
    socket, _ = await _connect(conversation.pk, session)
    await socket.send_to(text_data=json.dumps({"message": "go"}))
    frames = await _frames_until(socket, _finished)
    await socket.disconnect()
    assert 'class="msg-error"' in frames[-1]
    assert expected in html.unescape(frames[-1])


async def test_unreachable_llm_shows_a_bounded_error(db: None) -> None:
    from registry.services import llm_model_save

    await sync_to_async(llm_model_save)(
        model=LLMModel(
            name="gone",
            provider="openai_compatible",
            endpoint="http://127.0.0.1:9/v1",
            model="m",
            request_timeout=3,
        )
    )
    session, conversation = await _user_and_conversation()
    socket, _ = await _connect(conversation.pk, session)
    await socket.send_to(text_data=json.dumps({"message": "hello"}))
    frames = await _frames_until(socket, _finished, timeout=30)
    await socket.disconnect()
    assert "Cannot reach the model gone at 127.0.0.1:9" in html.unescape(frames[-1])


async def test_a_tool_server_down_is_a_tool_error_card(
    llm: ScriptedLLM, llm_model: LLMModel, demo_http: MCPServer
) -> None:
    demo_http.url = "http://127.0.0.1:9/mcp"  # the server "went away" after its last healthy check
    await demo_http.asave(update_fields=["url"])
    llm.enqueue(
        Turn.tool_calls([ToolCallSpec("add", {"a": 1, "b": 2})]), Turn.text("The tool server is down [1].")
    )
    session, conversation = await _user_and_conversation()
    socket, _ = await _connect(conversation.pk, session)
    await socket.send_to(text_data=json.dumps({"message": "add"}))
    frames = await _frames_until(socket, _finished)
    await socket.disconnect()
    assert 'class="tool-card status-error"' in frames[-1]
    assert "add on lab failed" in html.unescape("".join(frames))
