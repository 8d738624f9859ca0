"""``/mcp``: rate-limit headers on every answer, a DRF token's level and limit, ceilings on minted keys.

Before: a user's DRF token got ``read_write`` on ``/mcp`` whatever the user's permissions, with no
rate limit at all, and ``/mcp`` answers carried no ``X-RateLimit-*`` headers. In-process: the real
endpoint app, the mcp SDK's client over an ASGI transport, a built-in tool provider per level.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from io import StringIO
from typing import Any

import httpx2
import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from rest_framework.authtoken.models import Token

from netops.errors import ApplicationError, PermissionDeniedError
from registry.catalog import BuiltinProvider, BuiltinTool, CallContext, register_provider, unregister_provider
from registry.key_policy import api_key_policy_check
from registry.keys import api_key_create
from registry.mcp_endpoint import MCPEndpoint, transport_security

LEVEL_TOOLS = {"probe_read": "read_only", "probe_write": "read_write", "probe_admin": "admin"}


@pytest.fixture
def level_tools() -> Iterator[None]:
    async def handler(arguments: dict[str, Any], context: CallContext) -> dict[str, Any]:
        return {"ok": True}

    schema: dict[str, Any] = {"type": "object", "properties": {}}
    tools = [
        BuiltinTool(name, f"A {level} probe.", schema, handler, permission=level)  # type: ignore[arg-type]
        for name, level in LEVEL_TOOLS.items()
    ]
    register_provider(BuiltinProvider(source="probe", tools=lambda: tools))
    yield
    unregister_provider("probe")


class Session:
    """The endpoint in-process; every HTTP response's headers are kept in ``responses``."""

    def __init__(self, credential: str) -> None:
        self.responses: list[httpx2.Response] = []
        self.app = MCPEndpoint(transport_security(["testserver"], []))
        self.credential = credential

    async def _keep(self, response: httpx2.Response) -> None:
        self.responses.append(response)

    async def tools(self) -> set[str]:
        http = httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=self.app),
            headers={"Authorization": f"Bearer {self.credential}"},
            event_hooks={"response": [self._keep]},
            timeout=10,
        )
        async with (
            http,
            Client(streamable_http_client("http://testserver/mcp", http_client=http)) as client,
        ):
            listed = (await client.list_tools()).tools
        return {tool.name for tool in listed} & set(LEVEL_TOOLS)

    async def post_raw(self) -> httpx2.Response:
        async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=self.app), timeout=10) as http:
            return await http.post(
                "http://testserver/mcp",
                headers={
                    "Authorization": f"Bearer {self.credential}",
                    "Accept": "application/json, text/event-stream",
                    "Content-Type": "application/json",
                },
                json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
            )


def _token(user: User) -> str:
    return Token.objects.create(user=user).key


@pytest.mark.django_db(transaction=True)
async def test_every_mcp_answer_carries_the_key_rate_limit_headers(
    make_user: Callable[..., User], level_tools: None
) -> None:
    owner = await database_sync_to_async(make_user)("ci")
    _, plain = await database_sync_to_async(api_key_create)(
        owner=owner, name="ci", level="read_only", rate_limit=50
    )
    session = Session(plain)
    await session.tools()
    answered = [r for r in session.responses if r.status_code < 300]
    assert answered, "no successful /mcp response"
    remaining = []
    for response in answered:
        assert response.headers["X-RateLimit-Limit"] == "50"
        assert int(response.headers["X-RateLimit-Reset"]) > 0
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
    assert remaining == sorted(remaining, reverse=True) and remaining[-1] < 50


@pytest.mark.django_db(transaction=True)
async def test_a_token_acts_at_its_users_level(make_user: Callable[..., User], level_tools: None) -> None:
    plain = await database_sync_to_async(make_user)("reader")
    proposer = await database_sync_to_async(make_user)("proposer", "netboxrw.add_changerequest")
    root = await database_sync_to_async(make_user)("root", superuser=True)
    seen = {}
    for user in (plain, proposer, root):
        seen[user.username] = await Session(await database_sync_to_async(_token)(user)).tools()
    assert seen["reader"] == {"probe_read"}  # was read_write for every token
    assert seen["proposer"] == {"probe_read", "probe_write"}
    assert seen["root"] == set(LEVEL_TOOLS)


@pytest.mark.django_db(transaction=True)
async def test_a_token_is_rate_limited_per_user(make_user: Callable[..., User], settings: Any) -> None:
    settings.API_KEY_DEFAULT_RATE_LIMIT = 3
    # A cache of its own: user ids repeat between runs, and a shared Redis keeps the hour's counts.
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "policy"}
    }
    user = await database_sync_to_async(make_user)("busy")
    session = Session(await database_sync_to_async(_token)(user))
    answers = [await session.post_raw() for _ in range(4)]
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    assert [a.headers["X-RateLimit-Remaining"] for a in answers[:3]] == ["2", "1", "0"]
    assert answers[3].status_code == 429 and int(answers[3].headers["Retry-After"]) >= 1
    # A second token of the same user shares the count; another user has their own.
    second = Session(await database_sync_to_async(_token)(await database_sync_to_async(make_user)("other")))
    assert (await second.post_raw()).status_code == 200


@pytest.mark.django_db
def test_minted_keys_have_a_level_and_rate_ceiling(make_user: Callable[..., User], settings: Any) -> None:
    settings.API_KEY_MAX_RATE_LIMIT = 5000
    engineer, root = make_user("engineer"), make_user("root", superuser=True)
    with pytest.raises(PermissionDeniedError) as denied:
        api_key_policy_check(owner=engineer, level="admin", rate_limit=None)
    assert denied.value.field == "level"
    with pytest.raises(ApplicationError) as too_fast:
        api_key_policy_check(owner=engineer, level="read_only", rate_limit=5001)
    assert too_fast.value.field == "rate_limit" and "5000" in too_fast.value.message
    api_key_policy_check(owner=engineer, level="read_write", rate_limit=5000)
    api_key_policy_check(owner=root, level="admin", rate_limit=10**6)
    # The command enforces it (the keys page goes through the service).
    for level, limit in (("admin", "10"), ("read_only", "999999")):
        with pytest.raises(CommandError):
            call_command(
                "create_api_key",
                "--user",
                "engineer",
                "--level",
                level,
                "--rate-limit",
                limit,
                stdout=StringIO(),
            )
    call_command("create_api_key", "--user", "root", "--level", "admin", stdout=StringIO(), stderr=StringIO())
