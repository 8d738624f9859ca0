"""Websockets on Redis: idle sockets live past every timeout, and a Redis restart mid-answer is survived.

redis-py 8 made a 5 s socket timeout the default, equal to channels_redis' 5 s blocking pop: every
idle chat socket on Redis closed with 1011 within seconds. These tests hold sockets idle for a
minute across two daphne processes, and restart a Redis of their own in the middle of an answer.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import websockets
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client

from chat.models import Message, MessageStatus
from chat.services import conversation_create
from registry.models import LLMModel
from tests.support.daphne import current_database_url, daphne, shared_env
from tests.support.processes import free_port, wait_for_port
from tests.support.scripted_llm import ScriptedLLM, Turn

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

IDLE_SECONDS = float(os.environ.get("NETOPS_IDLE_SOCKET_SECONDS", "60"))


def _login(username: str) -> tuple[str, User]:
    user = User.objects.create_user(username, password="pw-for-tests-1")
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value, user


async def _open(port: int, conversation_id: Any, session: str) -> Any:
    socket = await websockets.connect(
        f"ws://127.0.0.1:{port}/ws/chat/{conversation_id}/",
        additional_headers={"Cookie": f"sessionid={session}", "Origin": f"http://127.0.0.1:{port}"},
        ping_interval=None,  # idle means idle: no keepalive traffic from the client either
    )
    await asyncio.wait_for(socket.recv(), 5)  # the state on connect
    return socket


@pytest.fixture
def redis_processes(require_postgres: None, redis_url: str, tmp_path: Path) -> Iterator[list[int]]:
    """Two daphne processes on the test's PostgreSQL and the machine's Redis."""
    env = shared_env(
        tmp_path, database_url=current_database_url(), redis_url=redis_url, SECRET_KEY=settings.SECRET_KEY
    )
    with ExitStack() as stack:
        servers = [stack.enter_context(daphne(env, log=tmp_path / f"daphne-{i}.log")) for i in range(2)]
        yield [server.port for server in servers]


def test_twenty_idle_websockets_on_two_processes_stay_open(redis_processes: list[int]) -> None:
    session, user = _login("idler")
    conversations = [conversation_create(user=user) for _ in range(20)]

    async def scenario() -> tuple[int, int, int]:
        sockets = [
            await _open(redis_processes[index % 2], conversation.pk, session)
            for index, conversation in enumerate(conversations)
        ]
        await asyncio.sleep(IDLE_SECONDS)
        open_after_idle = sum(1 for socket in sockets if socket.close_code is None)
        # Still usable, not just not yet noticed as closed: each answers a frame it cannot read.
        answered = 0
        for socket in sockets:
            with_answer = False
            try:
                await socket.send("not json")
                with_answer = "Could not read that message" in await asyncio.wait_for(socket.recv(), 5)
            except websockets.ConnectionClosed:
                pass
            answered += with_answer
        for socket in sockets:
            await socket.close()
        return len(sockets), open_after_idle, answered

    opened, still_open, answered = asyncio.run(scenario())
    print(f"idle websockets on Redis over {IDLE_SECONDS:g} s: opened {opened}, still open {still_open}")
    assert (opened, still_open, answered) == (20, 20, 20)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """A redis-server of this test's own on a free port, and a function that restarts it."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.fail("redis-server is missing (apt-get install redis-server)")
    port = free_port()
    command = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    state: dict[str, subprocess.Popen[bytes]] = {}

    def start() -> None:
        state["process"] = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL)
        wait_for_port(port, timeout=10, process=state["process"])

    def restart(down_seconds: float) -> None:
        state["process"].terminate()
        state["process"].wait(timeout=10)
        time.sleep(down_seconds)
        start()

    start()
    try:
        yield f"redis://127.0.0.1:{port}/0", restart
    finally:
        state["process"].terminate()
        state["process"].wait(timeout=10)


def test_a_redis_restart_mid_answer_is_survived(
    require_postgres: None, own_redis: tuple[str, Any], tmp_path: Path
) -> None:
    redis_url, restart = own_redis
    answer = " ".join(f"hop{i}" for i in range(120))
    with ScriptedLLM() as llm:
        llm.enqueue(Turn.text(answer, chunk_size=5, delay=0.05))  # ~6 s of streaming
        llm.enqueue(Turn.text("second answer after the restart"))
        LLMModel.objects.create(
            name="scripted", provider="openai_compatible", endpoint=llm.base_url, model="m", is_default=True
        )
        session, user = _login("restarter")
        conversation = conversation_create(user=user)
        env = shared_env(
            tmp_path, database_url=current_database_url(), redis_url=redis_url, SECRET_KEY=settings.SECRET_KEY
        )
        with daphne(env, log=tmp_path / "daphne.log") as server:

            async def scenario() -> tuple[str, str, int]:
                socket = await _open(server.port, conversation.pk, session)
                await socket.send(json.dumps({"message": "trace the path"}))
                await asyncio.sleep(1.5)
                await asyncio.to_thread(restart, 1.0)  # Redis gone for a second, mid-stream, empty after
                last = ""
                deadline = time.monotonic() + 30
                while 'data-state="idle"' not in last and time.monotonic() < deadline:
                    last = await asyncio.wait_for(socket.recv(), 15)
                # The same socket, after the restart, still talks: a second question is answered.
                await socket.send(json.dumps({"message": "and now?"}))
                second = ""
                while "second answer after the restart" not in second and time.monotonic() < deadline:
                    second = await asyncio.wait_for(socket.recv(), 15)
                close_code = socket.close_code
                await socket.close()
                return last, second, close_code or 0

            last, second, close_code = asyncio.run(scenario())
            log = (tmp_path / "daphne.log").read_text(errors="replace")
    assert 'data-state="idle"' in last, "the first answer never finished on the socket"
    assert close_code == 0
    assert "second answer after the restart" in second
    first = Message.objects.filter(role="assistant").order_by("pk").first()
    assert first is not None and first.status == MessageStatus.COMPLETE and first.content == answer
    assert "Task exception was never retrieved" not in log
