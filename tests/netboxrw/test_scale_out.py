"""Scale-out end to end: two daphne processes, two workers, PostgreSQL, Redis and the real NetBox.

A request is approved through process A; one of the workers applies it; a review page's socket on
process B sees the progress and the outcome, and the asking conversation, open on process B, is
told what became of its change.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
import websockets
from django.conf import settings
from django.test import Client
from rest_framework.authtoken.models import Token

from chat.services import conversation_create
from netboxrw.client import NetBoxClient
from netboxrw.models import ChangeRequest, ChangeState
from tests.netboxrw.lab import Lab, device_change, engineer, make_lab
from tests.support.daphne import current_database_url, daphne, shared_env
from tests.support.netbox_server import NetBoxInstance

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def web(
    require_postgres: None, redis_url: str, netbox: NetBoxInstance, tmp_path: Path
) -> Iterator[list[int]]:
    env = shared_env(
        tmp_path,
        database_url=current_database_url(),
        redis_url=redis_url,
        SECRET_KEY=settings.SECRET_KEY,
        NETBOX_URL=netbox.url,
        NETBOX_TOKEN=netbox.token_v2,
    )
    with ExitStack() as stack:
        servers = [stack.enter_context(daphne(env, log=tmp_path / f"daphne-{i}.log")) for i in range(2)]
        yield [server.port for server in servers]


async def _connect(port: int, path: str, session: str) -> websockets.ClientConnection:
    return await websockets.connect(
        f"ws://127.0.0.1:{port}{path}",
        additional_headers={"Cookie": f"sessionid={session}", "Origin": f"http://127.0.0.1:{port}"},
    )


def test_approved_on_a_applied_by_a_worker_seen_live_on_b(
    nb: NetBoxClient,
    web: list[int],
    redis_url: str,
    start_worker: Callable[..., subprocess.Popen[bytes]],
) -> None:
    lab: Lab = make_lab(nb)
    alice, bob = engineer("alice", reviewer=True), engineer("bob", reviewer=True)
    conversation = conversation_create(user=alice)
    name = f"ams-{lab.tag}-scl001"
    change_id = device_change(lab, alice, name, conversation_id=str(conversation.pk))
    sessions = {}
    for user in (alice, bob):
        client = Client()
        client.force_login(user)
        sessions[user.username] = client.cookies["sessionid"].value
    token = Token.objects.create(user=bob).key
    for worker in ("w1", "w2"):
        start_worker(worker, REDIS_URL=redis_url)

    async def scenario() -> tuple[list[str], list[str], int]:
        queue_b = await _connect(web[1], "/ws/changes/", sessions["bob"])
        chat_b = await _connect(web[1], f"/ws/chat/{conversation.pk}/", sessions["alice"])
        await asyncio.wait_for(chat_b.recv(), 5)  # the conversation's state on connect
        # Approved over HTTP through process A; the web process only records and queues it.
        approve_a = await asyncio.to_thread(
            _post, web[0], f"/api/change-requests/{change_id}/approve/", token
        )
        queue_frames: list[str] = []
        while not any('data-state="applied"' in f for f in queue_frames):
            queue_frames.append(await asyncio.wait_for(queue_b.recv(), 60))
        chat_frames: list[str] = []
        while not any("is now" in f and "applied" in f for f in chat_frames):
            chat_frames.append(await asyncio.wait_for(chat_b.recv(), 30))
        await queue_b.close()
        await chat_b.close()
        return queue_frames, chat_frames, approve_a

    queue_frames, chat_frames, approve_status = asyncio.run(scenario())
    assert approve_status == 200
    assert any("applying: 0 of 5 operations" in f for f in queue_frames)
    assert any("applying: 5 of 5 operations" in f for f in queue_frames)
    change = ChangeRequest.objects.get(pk=change_id)
    assert change.state == ChangeState.APPLIED
    assert change.claimed_by == "" and {s.worker for s in change.journal.all()} <= {"w1", "w2"}
    assert len(nb.fetch_all("dcim/devices", {"name": name})) == 1
    assert any(f"#{change_id}" in f for f in chat_frames)


def _post(port: int, path: str, token: str) -> int:
    response = httpx.post(
        f"http://127.0.0.1:{port}{path}",
        json={"comment": "scale-out"},
        headers={"Authorization": f"Token {token}"},
        timeout=30,
    )
    return response.status_code
