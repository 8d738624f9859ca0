"""/metrics: who may read it, and that real requests, tool calls, chat runs and rows show up in it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import prometheus_client
import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from chat.models import Message, MessageRole
from chat.services import conversation_create
from netboxrw.models import ChangeRequest, ChangeState
from netops.asgi import application
from netops.errors import ApplicationError
from registry.catalog import BuiltinProvider, BuiltinTool, ToolCatalog, register_provider, unregister_provider
from registry.models import LLMModel, MCPServer, ServerStatus
from registry.services import llm_model_save
from tests.support.scripted_llm import ScriptedLLM, Turn

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _parse(body: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _scrape() -> Samples:
    response = Client().get("/metrics")
    assert response.status_code == 200, response.content
    return _parse(response.content.decode())


async def _ascrape() -> Samples:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application), base_url="http://localhost"
    ) as c:
        response = await c.get("/metrics")
    assert response.status_code == 200, response.text
    return _parse(response.text)


# --- access ------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_refused_from_an_address_outside_the_allowed_networks(settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    response = Client(REMOTE_ADDR="203.0.113.7").get("/metrics")
    assert response.status_code == 403
    assert b"netops_" not in response.content


@pytest.mark.django_db
def test_token_is_asked_for_then_checked_when_the_address_is_not_allowed(settings: Any) -> None:
    settings.METRICS_TOKEN = "scrape-secret-1"
    outsider = Client(REMOTE_ADDR="203.0.113.7")

    missing = outsider.get("/metrics")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"].startswith("Bearer")

    wrong = outsider.get("/metrics", headers={"Authorization": "Bearer scrape-secret-2"})
    assert wrong.status_code == 403
    assert b"netops_" not in wrong.content

    other_scheme = outsider.get("/metrics", headers={"Authorization": "Token scrape-secret-1"})
    assert other_scheme.status_code == 403

    right = outsider.get("/metrics", headers={"Authorization": "Bearer scrape-secret-1"})
    assert right.status_code == 200
    assert right["Content-Type"] == prometheus_client.CONTENT_TYPE_LATEST
    assert b"# TYPE netops_http_requests_total counter" in right.content


@pytest.mark.django_db
@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
def test_loopback_needs_no_token_by_default(settings: Any, address: str) -> None:
    settings.METRICS_TOKEN = "scrape-secret-1"
    response = Client(REMOTE_ADDR=address).get("/metrics")
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")


@pytest.mark.django_db
def test_configured_networks_replace_the_default(settings: Any) -> None:
    settings.METRICS_TOKEN = "scrape-secret-1"
    settings.METRICS_ALLOWED_NETWORKS = ["10.20.0.0/16"]
    assert Client(REMOTE_ADDR="10.20.3.4").get("/metrics").status_code == 200
    assert Client(REMOTE_ADDR="10.21.3.4").get("/metrics").status_code == 401
    assert Client(REMOTE_ADDR="127.0.0.1").get("/metrics").status_code == 401  # loopback no longer listed

    settings.METRICS_ALLOWED_NETWORKS = []  # token only
    loopback = Client(REMOTE_ADDR="127.0.0.1")
    assert loopback.get("/metrics").status_code == 401
    assert loopback.get("/metrics", headers={"Authorization": "Bearer scrape-secret-1"}).status_code == 200


@pytest.mark.django_db
def test_only_netops_and_process_metrics_are_exposed() -> None:
    leak = prometheus_client.Counter("netops_test_default_registry_leak", "x")  # the global registry
    try:
        leak.inc()
        samples = _scrape()
    finally:
        prometheus_client.REGISTRY.unregister(leak)
    names = {name for name, _ in samples}
    assert "netops_test_default_registry_leak_total" not in names
    assert "process_cpu_seconds_total" in names
    assert "python_info" in names


# --- HTTP --------------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_http_requests_are_counted_by_view_name_and_status_through_asgi() -> None:
    before = await _ascrape()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=application), base_url="http://localhost"
    ) as c:
        for _ in range(3):
            assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/no/such/page-4711")).status_code == 404
    after = await _ascrape()

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    assert delta("netops_http_requests_total", view="healthz", status="200") == 3
    assert delta("netops_http_request_duration_seconds_count", view="healthz") == 3
    assert delta("netops_http_request_duration_seconds_sum", view="healthz") > 0
    assert delta("netops_http_requests_total", view="<unmatched>", status="404") == 1
    assert delta("netops_http_requests_total", view="metrics", status="200") == 1  # the first scrape
    views = {dict(labels).get("view") for name, labels in after if name == "netops_http_requests_total"}
    assert not any("4711" in (view or "") for view in views)  # raw paths never become labels


# --- tool calls --------------------------------------------------------------------------------------


@pytest.fixture
def probe_tools() -> Iterator[None]:
    async def probe(arguments: dict[str, Any], context: Any) -> dict[str, Any]:
        if arguments.get("fail") == "expected":
            raise ApplicationError("device not found")
        if arguments.get("fail") == "crash":
            raise RuntimeError("connection reset")
        return {"ok": True}

    async def slow(arguments: dict[str, Any], context: Any) -> str:
        await asyncio.sleep(5)
        return "late"

    register_provider(
        BuiltinProvider(
            source="metricsbox",
            tools=lambda: [
                BuiltinTool(
                    name="probe", description="Probe.", input_schema={"type": "object"}, handler=probe
                ),
                BuiltinTool(
                    name="slow_probe", description="Slow.", input_schema={"type": "object"}, handler=slow
                ),
            ],
        )
    )
    yield
    unregister_provider("metricsbox")


@pytest.mark.django_db
def test_tool_calls_are_counted_by_tool_source_and_outcome(probe_tools: None) -> None:
    catalog = ToolCatalog.load(server_ids=[])
    before = _scrape()

    async def calls() -> list[bool]:
        results = [
            await catalog.call("probe", {}),
            await catalog.call("probe", {}),
            await catalog.call("probe", {"fail": "expected"}),
            await catalog.call("probe", {"fail": "crash"}),
            await catalog.call("slow_probe", {}, timeout=0.05),
        ]
        with pytest.raises(ApplicationError):
            await catalog.call("no_such_tool", {})  # refused before it is a call: not counted
        return [r.is_error for r in results]

    assert asyncio.run(calls()) == [False, False, True, True, True]
    after = _scrape()

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    calls_total = "netops_tool_calls_total"
    assert delta(calls_total, tool="probe", source="metricsbox", outcome="ok") == 2
    assert delta(calls_total, tool="probe", source="metricsbox", outcome="error") == 2
    assert delta(calls_total, tool="probe", source="metricsbox", outcome="timeout") == 0
    assert delta(calls_total, tool="slow_probe", source="metricsbox", outcome="timeout") == 1
    assert delta("netops_tool_call_duration_seconds_count", tool="probe", source="metricsbox") == 4
    slow_le_001 = delta(
        "netops_tool_call_duration_seconds_bucket", tool="slow_probe", source="metricsbox", le="0.01"
    )
    slow_le_1 = delta(
        "netops_tool_call_duration_seconds_bucket", tool="slow_probe", source="metricsbox", le="1.0"
    )
    assert (slow_le_001, slow_le_1) == (0, 1)  # waited for the 0.05 s limit, not the 5 s sleep
    assert not any(dict(labels).get("tool") == "no_such_tool" for _, labels in after)


# --- computed at scrape time -------------------------------------------------------------------------


@pytest.mark.django_db
def test_change_requests_by_state_and_servers_by_status(django_assert_max_num_queries: Any) -> None:
    for state in (ChangeState.PENDING, ChangeState.PENDING, ChangeState.APPLIED):
        ChangeRequest.objects.create(tool="update_device", plan=[], summary="Rename r1", state=state)
    for name, status in (
        ("a", ServerStatus.HEALTHY),
        ("b", ServerStatus.HEALTHY),
        ("c", ServerStatus.UNHEALTHY),
    ):
        MCPServer.objects.create(name=name, protocol="http", url=f"http://127.0.0.1:9/{name}", status=status)

    # One aggregate query each: change requests, servers, the task queue (netops.task_queue).
    with django_assert_max_num_queries(3):
        samples = _scrape()

    assert _value(samples, "netops_change_requests", state="pending") == 2
    assert _value(samples, "netops_change_requests", state="applied") == 1
    assert ("netops_change_requests", frozenset({("state", "rejected")})) in samples  # present, at 0
    assert _value(samples, "netops_change_requests", state="rejected") == 0
    assert _value(samples, "netops_mcp_servers", status="healthy") == 2
    assert _value(samples, "netops_mcp_servers", status="unhealthy") == 1
    assert _value(samples, "netops_mcp_servers", status="unknown") == 0

    ChangeRequest.objects.filter(state=ChangeState.PENDING).update(state=ChangeState.REJECTED)
    samples = _scrape()
    assert _value(samples, "netops_change_requests", state="pending") == 0
    assert _value(samples, "netops_change_requests", state="rejected") == 2


# --- chat: sockets, runs, LLM requests and tokens ------------------------------------------------------


@sync_to_async
def _session_and_conversation() -> tuple[str, str]:
    user = User.objects.create_user("metrics-user", password="pw-for-tests-1")
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value, str(conversation_create(user=user).pk)


async def _until_idle(socket: WebsocketCommunicator) -> None:
    while True:
        frame = await socket.receive_from(timeout=15)
        if 'data-state="idle"' in frame and "msg-assistant" in frame:
            return


@pytest.mark.django_db(transaction=True)
async def test_sockets_runs_llm_requests_and_tokens() -> None:
    with ScriptedLLM() as llm:
        await sync_to_async(llm_model_save)(
            model=LLMModel(
                name="metrics-llm",
                provider="openai_compatible",
                endpoint=llm.base_url,
                model="gpt-scripted",
                request_timeout=10,
                is_default=True,
            )
        )
        session, conversation_id = await _session_and_conversation()
        before = await _ascrape()
        socket = WebsocketCommunicator(
            application,
            f"/ws/chat/{conversation_id}/",
            headers=[
                (b"origin", b"http://localhost"),
                (b"host", b"localhost"),
                (b"cookie", f"sessionid={session}".encode()),
            ],
        )
        connected, _ = await socket.connect()
        assert connected
        try:
            await socket.receive_from(timeout=5)
            opened = await _ascrape()

            llm.enqueue(Turn.hang_after(2, text="Looking at every router", chunk_size=4))
            await socket.send_to(text_data=json.dumps({"message": "Check EMEA"}))
            await socket.receive_from(timeout=5)  # the question and the empty answer
            running = await _ascrape()
            await socket.send_to(text_data=json.dumps({"action": "stop"}))
            await _until_idle(socket)

            llm.enqueue(Turn.text("All routers are up.", chunk_size=4))
            await socket.send_to(text_data=json.dumps({"message": "And now?"}))
            await _until_idle(socket)
            finished = await _ascrape()
        finally:
            await socket.disconnect()
        closed = await _ascrape()

    def value(samples: Samples, name: str, **labels: str) -> float:
        return _value(samples, name, **labels) - _value(before, name, **labels)

    sessions, runs = "netops_websocket_sessions_active", "netops_chat_runs_active"
    assert [value(s, sessions) for s in (opened, running, finished, closed)] == [1, 1, 1, 0]
    assert [value(s, runs) for s in (opened, running, finished)] == [0, 1, 0]

    requests = "netops_llm_requests_total"
    assert value(finished, requests, model="metrics-llm", outcome="stopped") == 1
    assert value(finished, requests, model="metrics-llm", outcome="ok") == 1
    assert value(finished, requests, model="metrics-llm", outcome="error") == 0

    answers = [
        m
        async for m in Message.objects.filter(
            conversation_id=conversation_id, role=MessageRole.ASSISTANT
        ).order_by("id")
    ]
    prompt = sum(m.prompt_tokens or 0 for m in answers)
    completion = sum(m.completion_tokens or 0 for m in answers)
    assert prompt > 0 and completion > 0
    assert value(finished, "netops_llm_tokens_total", model="metrics-llm", kind="prompt") == prompt
    assert value(finished, "netops_llm_tokens_total", model="metrics-llm", kind="completion") == completion
