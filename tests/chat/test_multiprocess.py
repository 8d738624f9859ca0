"""Two daphne processes sharing PostgreSQL and Redis: a tab on either one follows and stops any run.

This is the scale-out promise of DESIGN.md: nothing that only one process can see. The run lives in
process A; process B knows of it only through the Redis checkpoint and the channel layer.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from chat.models import Message, MessageStatus
from chat.services import conversation_create
from netops.redaction import Redactor, StreamRedactor
from registry.models import LLMModel
from tests.support.processes import ROOT, free_port, wait_for_http
from tests.support.scripted_llm import ScriptedLLM, Turn

TOKEN = re.compile(r'<div id="m(\d+)-text" hx-swap-oob="beforeend">(.*?)</div>', re.S)
SNAPSHOT = re.compile(r'class="msg-text streaming">(.*?)</div>', re.S)

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def _database_url() -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


HANG_TEXT = "Collecting interface counters from all leaves"


def _key_that_holds_nothing_back(streamed: str, chunk: int) -> str:
    """A SECRET_KEY none of whose forms could begin at the end of any chunk of ``streamed``.

    The stream redactor holds back a tail that could start one of netops' secrets (its random
    SECRET_KEY among them) until the next token; a run paused by the LLM would then show a few
    characters less than it received, depending on the key. With this key what the tab shows at
    the pause is exactly what the worker received (the hold-back is tested in test_redaction).
    """
    for attempt in range(10_000):
        key = f"multiprocess-stop-test-key-{attempt:05d}-" + "k" * 24
        stream = StreamRedactor(Redactor({key}))
        shown = "".join(stream.feed(streamed[i : i + chunk]) for i in range(0, len(streamed), chunk))
        if shown == streamed:
            return key
    raise AssertionError("no such key")


@pytest.fixture
def two_processes(
    require_postgres: None, redis_url: str, tmp_path: Path, settings: Any
) -> Iterator[list[int]]:
    settings.SECRET_KEY = _key_that_holds_nothing_back(HANG_TEXT[:24], 4)
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env.update(
        DATABASE_URL=_database_url(),
        REDIS_URL=redis_url,
        SECRET_KEY=settings.SECRET_KEY,  # the test's session cookie must verify in both processes
        NETOPS_VAR_DIR=str(tmp_path),
        LOG_LEVEL="WARNING",
    )
    ports, processes = [free_port(), free_port()], []
    daphne = str(Path(sys.executable).with_name("daphne"))
    try:
        for index, port in enumerate(ports):
            log = open(tmp_path / f"daphne-{index}.log", "wb")  # noqa: SIM115  (closed with the process)
            processes.append(
                subprocess.Popen(
                    [daphne, "-v", "0", "-b", "127.0.0.1", "-p", str(port), "netops.asgi:application"],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        for port, process in zip(ports, processes, strict=True):
            wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=30, process=process)
        yield ports
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=10)


def _session_and_conversation(llm: ScriptedLLM) -> tuple[str, Any]:
    LLMModel.objects.create(
        name="scripted", provider="openai_compatible", endpoint=llm.base_url, model="m", is_default=True
    )
    user = User.objects.create_user("alice", password="pw-for-tests-1")
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value, conversation_create(user=user)


async def _open(port: int, conversation_id: Any, session: str) -> Any:
    socket = await websockets.connect(
        f"ws://127.0.0.1:{port}/ws/chat/{conversation_id}/",
        additional_headers={"Cookie": f"sessionid={session}", "Origin": f"http://127.0.0.1:{port}"},
    )
    await asyncio.wait_for(socket.recv(), 5)  # the state on connect
    return socket


async def _until_done(socket: Any) -> list[str]:
    frames = []
    while True:
        frame = await asyncio.wait_for(socket.recv(), 15)
        frames.append(frame)
        if 'data-state="idle"' in frame and "msg-assistant" in frame:
            return frames


def _tokens(frames: list[str]) -> str:
    return "".join(html.unescape(text) for frame in frames for _, text in TOKEN.findall(frame))


def test_a_tab_on_another_process_reattaches_and_sees_the_answer_complete(two_processes: list[int]) -> None:
    answer = " ".join(f"hop{i}" for i in range(80))
    with ScriptedLLM() as llm:
        llm.enqueue(Turn.text(answer, chunk_size=5, delay=0.03))
        session, conversation = _session_and_conversation(llm)

        async def scenario() -> tuple[str, list[str]]:
            tab_a = await _open(two_processes[0], conversation.pk, session)
            await tab_a.send(json.dumps({"message": "trace the path"}))
            seen: list[str] = []
            while len(_tokens(seen)) < 50:
                seen.append(await asyncio.wait_for(tab_a.recv(), 5))
            await tab_a.close()  # the user's browser moves to the other process
            tab_b = await websockets.connect(
                f"ws://127.0.0.1:{two_processes[1]}/ws/chat/{conversation.pk}/",
                additional_headers={
                    "Cookie": f"sessionid={session}",
                    "Origin": f"http://127.0.0.1:{two_processes[1]}",
                },
            )
            snapshot = await asyncio.wait_for(tab_b.recv(), 5)
            frames = await _until_done(tab_b)
            await tab_b.close()
            return snapshot, frames

        snapshot, frames = asyncio.run(scenario())
    assert 'data-state="running"' in snapshot
    resumed = html.unescape(SNAPSHOT.search(snapshot).group(1))
    # The checkpoint may lag the first tab by up to one flush interval, never more.
    assert len(resumed) >= 20 and answer.startswith(resumed)
    # Deltas from process A continue exactly where the checkpoint left off: nothing lost or doubled.
    assert resumed + _tokens(frames) == answer
    assert answer in html.unescape(frames[-1])
    assert Message.objects.get(role="assistant").content == answer


def test_stop_from_a_tab_on_another_process_stops_the_run(two_processes: list[int]) -> None:
    with ScriptedLLM() as llm:
        llm.enqueue(Turn.hang_after(6, text=HANG_TEXT, chunk_size=4))
        session, conversation = _session_and_conversation(llm)

        async def scenario() -> list[str]:
            tab_a = await _open(two_processes[0], conversation.pk, session)
            tab_b = await _open(two_processes[1], conversation.pk, session)
            await tab_a.send(json.dumps({"message": "collect counters"}))
            seen: list[str] = []
            while len(_tokens(seen)) < 24:
                seen.append(await asyncio.wait_for(tab_b.recv(), 5))
            await tab_b.send(json.dumps({"action": "stop"}))
            frames = await _until_done(tab_b)
            await tab_a.close()
            await tab_b.close()
            return frames

        frames = asyncio.run(scenario())
        disconnects = llm.disconnects
    assert "stopped" in frames[-1]
    message = Message.objects.get(role="assistant")
    assert message.status == MessageStatus.STOPPED
    assert message.content == "Collecting interface counters from"[: len(message.content)]
    assert len(message.content) == 24
    assert disconnects == 1
