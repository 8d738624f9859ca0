"""Health checks against real MCP servers: Streamable HTTP and SSE on loopback, stdio subprocesses."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from registry.models import MCPServer, ServerStatus
from registry.selectors import mcp_server_tool_definitions
from registry.services import mcp_servers_check_health
from tests.support.processes import (
    ROOT,
    RunningServer,
    demo_command,
    demo_env,
    free_port,
    mcp_demo_server,
    wait_for_port,
)

DEMO_TOOLS = {"add", "get_interface_status", "bounce_interface", "slow_echo", "fail"}


def _server(name: str, **fields: object) -> MCPServer:
    fields.setdefault("health_check", "/health")
    return MCPServer.objects.create(name=name, **fields)


def _stdio(name: str, *extra: str, **fields: object) -> MCPServer:
    command, *args = demo_command("stdio", *extra)
    return _server(
        name, protocol="stdio", command=command, args=args, env=demo_env(), health_check="", **fields
    )


@pytest.mark.django_db
@pytest.mark.parametrize("transport", ["http", "sse"])
def test_network_server_becomes_healthy_and_its_tools_are_cached(transport: str) -> None:
    with mcp_demo_server(transport) as running:
        path = "/mcp" if transport == "http" else "/sse"
        server = _server(f"demo-{transport}", protocol=transport, url=running.base_url + path)
        outcome = mcp_servers_check_health(servers=[server])[0]

    server.refresh_from_db()
    assert outcome.ok, outcome.error
    assert server.status == ServerStatus.HEALTHY
    assert {t["name"] for t in mcp_server_tool_definitions(server=server)} == DEMO_TOOLS
    add = next(t for t in mcp_server_tool_definitions(server=server) if t["name"] == "add")
    assert add["annotations"] == {"readOnlyHint": True}
    assert add["input_schema"]["required"] == ["a", "b"]
    assert server.tools_refreshed_at is not None and server.last_error == ""


@pytest.mark.django_db
def test_bare_origin_url_gets_the_conventional_mcp_path() -> None:
    with mcp_demo_server("http") as running:
        server = _server("bare", protocol="http", url=running.base_url)
        assert mcp_servers_check_health(servers=[server])[0].ok


@pytest.mark.django_db
def test_stdio_server_is_healthy_with_tools() -> None:
    server = _stdio("demo-stdio")
    outcome = mcp_servers_check_health(servers=[server])[0]
    server.refresh_from_db()
    assert outcome.ok, outcome.error
    assert server.status == ServerStatus.HEALTHY
    assert {t["name"] for t in mcp_server_tool_definitions(server=server)} == DEMO_TOOLS


@pytest.mark.django_db
def test_a_missing_health_path_leaves_the_server_healthy_with_a_note() -> None:
    # Reference MCP servers have no /health: the MCP handshake decides.
    with mcp_demo_server("http") as running:
        server = _server("no-health", protocol="http", url=running.base_url + "/mcp", health_check="/nope")
        outcome = mcp_servers_check_health(servers=[server])[0]
    server.refresh_from_db()
    assert outcome.ok and server.status == ServerStatus.HEALTHY and server.last_error == ""
    assert "/nope answered 404" in server.health_note
    assert "MCP handshake decides" in server.health_note
    assert {t["name"] for t in mcp_server_tool_definitions(server=server)} == DEMO_TOOLS


@pytest.mark.django_db
def test_a_failing_health_path_is_unhealthy_and_an_html_page_is_summarised_by_its_title() -> None:
    with mcp_demo_server("http") as running:
        server = _server("proxy-down", protocol="http", url=running.base_url + "/mcp", health_check="/broken")
        outcome = mcp_servers_check_health(servers=[server])[0]
    server.refresh_from_db()
    assert not outcome.ok
    assert server.last_error.endswith("/broken answered 503: an HTML page titled '503 Service Unavailable'")
    assert "<" not in server.last_error and "upstream down" not in server.last_error


@pytest.mark.django_db
def test_a_tool_list_cut_at_the_limit_marks_the_server_degraded_and_offers_what_was_kept() -> None:
    from registry.catalog import ToolCatalog
    from registry.connections import MAX_TOOLS_PER_SERVER

    with mcp_demo_server("http", "--tools", str(MAX_TOOLS_PER_SERVER + 20)) as running:
        server = _server("huge", protocol="http", url=running.base_url + "/mcp", health_check="")
        outcome = mcp_servers_check_health(servers=[server])[0]
    server.refresh_from_db()
    assert outcome.ok and server.status == ServerStatus.DEGRADED
    assert f"cut at {MAX_TOOLS_PER_SERVER} of {MAX_TOOLS_PER_SERVER + 25} tools" in server.health_note
    assert len(mcp_server_tool_definitions(server=server)) == MAX_TOOLS_PER_SERVER
    offered = [t for t in ToolCatalog.load().tools() if t.source_kind != "builtin"]
    assert len(offered) == MAX_TOOLS_PER_SERVER  # degraded is usable: what it listed is offered


@pytest.mark.django_db
def test_stopped_server_turns_unhealthy_only_after_two_checks_and_keeps_its_tools() -> None:
    with mcp_demo_server("http") as running:
        server = _server("flappy", protocol="http", url=running.base_url + "/mcp")
        assert mcp_servers_check_health(servers=[server])[0].status == ServerStatus.HEALTHY
    # The server process is gone now.
    first = mcp_servers_check_health(servers=[server])[0]
    server.refresh_from_db()
    assert not first.ok and first.status == ServerStatus.HEALTHY and not first.changed
    assert server.last_result == ServerStatus.UNHEALTHY and server.last_error
    # The tools survive a failed check.
    assert len(mcp_server_tool_definitions(server=server)) == len(DEMO_TOOLS)

    second = mcp_servers_check_health(servers=[server])[0]
    server.refresh_from_db()
    assert second.status == ServerStatus.UNHEALTHY and second.changed
    assert server.status == ServerStatus.UNHEALTHY


@pytest.mark.django_db
def test_recovering_server_needs_two_good_checks() -> None:
    port = free_port()
    server = _server("recovering", protocol="http", url=f"http://127.0.0.1:{port}/mcp", connect_timeout=2)
    for _ in range(2):
        mcp_servers_check_health(servers=[server])
    server.refresh_from_db()
    assert server.status == ServerStatus.UNHEALTHY

    process = subprocess.Popen(
        demo_command("http", "--port", str(port)), cwd=ROOT, env={**os.environ, **demo_env()}
    )
    running = RunningServer(process, port)
    try:
        wait_for_port(port, process=process)
        assert mcp_servers_check_health(servers=[server])[0].status == ServerStatus.UNHEALTHY
        assert mcp_servers_check_health(servers=[server])[0].status == ServerStatus.HEALTHY
    finally:
        running.stop()


@pytest.mark.django_db
@pytest.mark.parametrize("transport", ["http", "stdio"])
def test_hung_server_is_unhealthy_within_its_timeout_while_a_healthy_one_is_checked_on_time(
    transport: str,
) -> None:
    with ExitStack() as stack:
        good = stack.enter_context(mcp_demo_server("http"))
        healthy = _server("good", protocol="http", url=good.base_url + "/mcp", connect_timeout=10)
        if transport == "http":
            stuck = stack.enter_context(mcp_demo_server("http", "--hang"))
            hung = _server(
                "hung", protocol="http", url=stuck.base_url + "/mcp", health_check="", connect_timeout=2
            )
        else:
            hung = _stdio("hung", "--hang", connect_timeout=2)
        started = time.monotonic()
        outcomes = {o.server.name: o for o in mcp_servers_check_health(servers=[healthy, hung])}
        elapsed = time.monotonic() - started

    assert outcomes["good"].ok and outcomes["good"].duration_ms < 2000
    assert not outcomes["hung"].ok
    assert "no answer within 2 s" in outcomes["hung"].error
    assert elapsed < 2 + 3, f"hung check took {elapsed:.1f} s for a 2 s timeout"
    hung.refresh_from_db()
    assert hung.status == ServerStatus.UNHEALTHY  # first result from unknown settles it


@pytest.mark.django_db
def test_unresolvable_secret_makes_the_check_fail_with_the_reference_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NETOPS_MISSING_SECRET", raising=False)
    server = _server(
        "needs-key",
        protocol="http",
        url="http://127.0.0.1:9/mcp",
        auth_secret_ref="env:NETOPS_MISSING_SECRET",
    )
    outcome = mcp_servers_check_health(servers=[server])[0]
    assert not outcome.ok
    assert "env:NETOPS_MISSING_SECRET" in outcome.error


@pytest.mark.django_db
def test_auth_header_is_sent_from_the_secret_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """A REST tool server that demands a bearer key sees the resolved secret, never the reference."""
    seen: list[str | None] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            body = (
                b'{"tools": [{"name": "get_devices", "permission_required": "read_only", "available": true}]}'
            )
            if self.path == "/health":
                body = b'{"status": "ok"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("NETOPS_REST_KEY", "chmp_test_key_123")
    try:
        server = _server(
            "chompy",
            protocol="rest",
            url=f"http://127.0.0.1:{httpd.server_port}/api/mcp",
            auth_secret_ref="env:NETOPS_REST_KEY",
        )
        outcome = mcp_servers_check_health(servers=[server])[0]
    finally:
        httpd.shutdown()
    assert outcome.ok, outcome.error
    assert seen == ["Bearer chmp_test_key_123", "Bearer chmp_test_key_123"]
    server.refresh_from_db()
    assert mcp_server_tool_definitions(server=server)[0]["name"] == "get_devices"
    assert mcp_server_tool_definitions(server=server)[0]["annotations"]["readOnlyHint"] is True


@pytest.mark.django_db
def test_disabled_servers_are_skipped() -> None:
    server = _server(
        "off", protocol="http", url="http://127.0.0.1:9/mcp", enabled=False, status=ServerStatus.DISABLED
    )
    assert mcp_servers_check_health(servers=[server]) == []
    server.refresh_from_db()
    assert server.status == ServerStatus.DISABLED and server.last_checked_at is None


@pytest.mark.django_db
def test_check_mcp_servers_command_reports_each_server(capsys: pytest.CaptureFixture[str]) -> None:
    with mcp_demo_server("http") as running:
        _server("cmd-good", protocol="http", url=running.base_url + "/mcp")
        _server("cmd-bad", protocol="http", url=f"http://127.0.0.1:{free_port()}/mcp", connect_timeout=2)
        call_command("check_mcp_servers")
    out = capsys.readouterr().out
    assert "cmd-good: healthy (changed), 5 tools" in out
    assert "cmd-bad: unhealthy (changed), 0 tools" in out
    assert MCPServer.objects.get(name="cmd-good").status == ServerStatus.HEALTHY


@pytest.mark.django_db
def test_check_mcp_servers_command_rejects_unknown_names() -> None:
    with pytest.raises(CommandError, match="no enabled server named ghost"):
        call_command("check_mcp_servers", "--server", "ghost")
