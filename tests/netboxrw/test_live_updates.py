"""Open queue pages and the asking conversation hear about change requests as they move."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Permission, User
from django.test import Client

from chat.services import conversation_create
from netboxrw import services
from netboxrw.plans import Plan, create_op
from netops.asgi import application
from tests.support.tasks import approve_and_apply

pytestmark = pytest.mark.django_db(transaction=True)


def _plan() -> Plan:
    return Plan(
        "netbox_ensure_vlan",
        "Ensure VLAN 42",
        [create_op("ipam/vlans", "VLAN 42", {"vid": 42, "name": "lab"})],
    )


@sync_to_async
def _setup(*perms: str) -> tuple[User, str, User]:
    user = User.objects.create_user("alice", password="pw-for-tests-1")
    user.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="netboxrw", codename__in=perms)
    )
    client = Client()
    client.force_login(user)
    reviewer = User.objects.create_user("bob", password="pw-for-tests-1")
    reviewer.user_permissions.add(*Permission.objects.filter(content_type__app_label="netboxrw"))
    return user, client.cookies["sessionid"].value, User.objects.get(pk=reviewer.pk)


def _socket(path: str, session: str) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        application,
        path,
        headers=[
            (b"origin", b"http://localhost"),
            (b"host", b"localhost"),
            (b"cookie", f"sessionid={session}".encode()),
        ],
    )


async def test_queue_pages_get_a_signal_for_new_and_changed_requests() -> None:
    alice, session, bob = await _setup("view_changerequest")
    socket = _socket("/ws/changes/", session)
    assert (await socket.connect())[0]
    change = await sync_to_async(services.change_request_create)(
        plan=_plan(), arguments={}, requester=services.Requester(user=alice, via="test")
    )
    frame = await socket.receive_from(timeout=5)
    assert f'data-change="{change.pk}"' in frame and 'data-state="pending"' in frame
    await sync_to_async(services.change_request_reject)(change_id=change.pk, reviewer=bob, comment="no")
    assert 'data-state="rejected"' in await socket.receive_from(timeout=5)
    await socket.disconnect()


async def test_queue_socket_needs_the_view_permission() -> None:
    _, session, _ = await _setup()
    socket = _socket("/ws/changes/", session)
    connected, code = await socket.connect()
    assert not connected and code == 4403


async def test_the_conversation_that_asked_is_told_the_outcome() -> None:
    alice, session, bob = await _setup("view_changerequest")
    conversation = await sync_to_async(conversation_create)(user=alice)
    socket = _socket(f"/ws/chat/{conversation.pk}/", session)
    assert (await socket.connect())[0]
    await socket.receive_from(timeout=5)  # the state on connect
    change = await sync_to_async(services.change_request_create)(
        plan=_plan(),
        arguments={},
        requester=services.Requester(user=alice, via="chat", conversation_id=str(conversation.pk)),
    )
    assert "is now <strong>pending</strong>" in await socket.receive_from(timeout=5)
    await sync_to_async(services.change_request_reject)(change_id=change.pk, reviewer=bob)
    frame = await socket.receive_from(timeout=5)
    assert f"#{change.pk}" in frame and "is now <strong>rejected</strong>" in frame
    await socket.disconnect()


def test_dry_run_mode_logs_writes_as_applied_but_sends_nothing(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.NETBOX_URL, settings.NETBOX_TOKEN, settings.NETBOX_DRY_RUN = "http://127.0.0.1:9", "x", True
    alice = User.objects.create_user("alice")
    bob = User.objects.create_user("bob")
    bob.user_permissions.add(*Permission.objects.filter(content_type__app_label="netboxrw"))
    bob = User.objects.get(pk=bob.pk)
    change = services.change_request_create(
        plan=_plan(), arguments={}, requester=services.Requester(user=alice, via="t")
    )
    with caplog.at_level(logging.INFO, logger="netboxrw.writes"):
        done = approve_and_apply(change_id=change.pk, reviewer=bob)
    # NetBox at 127.0.0.1:9 would have failed any request: nothing was sent, yet the change is applied.
    assert done.state == "applied"
    assert done.result["message"] == "dry run: logged, nothing sent"
    [line] = [r for r in caplog.records if r.getMessage() == "netbox write"]
    assert (
        line.result == "dry-run"
        and line.change_request == change.pk
        and line.data == {"vid": 42, "name": "lab"}
    )
    assert json.dumps(line.data)
