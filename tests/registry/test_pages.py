"""The tool catalog page and its htmx fragments, and the login page."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from registry.models import MCPServer, ServerStatus
from registry.tool_sync import server_tools_sync
from tests.support.processes import mcp_demo_server

CATALOG = "/registry/catalog/"
CLOSED_PORT_URL = "http://127.0.0.1:9/mcp"  # the discard port: nothing listens on loopback
TOOL = {
    "name": "t1",
    "description": "d",
    "input_schema": {"type": "object", "properties": {"x": {"type": "integer"}}},
    "annotations": {"readOnlyHint": True},
}


@pytest.fixture
def login(make_user: Callable[..., User]) -> Callable[..., Client]:
    """A browser session of a new user with the given permissions."""

    def make(*perms: str, username: str = "engineer") -> Client:
        client = Client()
        client.force_login(make_user(username, *perms))
        return client

    return make


@pytest.fixture
def viewer(login: Callable[..., Client]) -> Client:
    return login("registry.view_mcpserver", username="viewer")


@pytest.fixture
def checker(login: Callable[..., Client]) -> Client:
    return login("registry.view_mcpserver", "registry.change_mcpserver", username="checker")


def _with_tools(server: MCPServer, tools: list[dict[str, Any]]) -> MCPServer:
    """``server`` as its first healthy check leaves it: every listed tool accepted."""
    server_tools_sync(server=server, tools=tools)
    return server


def servers() -> dict[str, MCPServer]:
    return {
        "up": _with_tools(
            MCPServer.objects.create(
                name="up-server", url="http://127.0.0.1:8001/mcp", status=ServerStatus.HEALTHY
            ),
            [TOOL],
        ),
        "down": MCPServer.objects.create(
            name="down-server",
            url=CLOSED_PORT_URL,
            status=ServerStatus.UNHEALTHY,
            last_error="connection refused",
        ),
        "new": MCPServer.objects.create(name="new-server", url="http://127.0.0.1:8002/mcp"),
        "off": MCPServer.objects.create(
            name="off-server", url="http://127.0.0.1:8003/mcp", enabled=False, status=ServerStatus.DISABLED
        ),
    }


# --- the page --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_anonymous_is_sent_to_login() -> None:
    response = Client().get(CATALOG)

    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={CATALOG}"


@pytest.mark.django_db
def test_user_without_view_permission_is_forbidden(login: Callable[..., Client]) -> None:
    servers()

    response = login("registry.view_llmmodel").get(CATALOG)

    assert response.status_code == 403
    assert b"up-server" not in response.content


@pytest.mark.django_db
def test_catalog_lists_every_server_with_its_status_badge(viewer: Client) -> None:
    made = servers()

    response = viewer.get(CATALOG)

    assert response.status_code == 200
    assert "HX-Request" in response["Vary"]
    content = response.content.decode()
    assert "<html" in content
    for key, status, label in [
        ("up", "healthy", "Healthy"),
        ("down", "unhealthy", "Unhealthy"),
        ("new", "unknown", "Unknown"),
        ("off", "disabled", "Disabled"),
    ]:
        server = made[key]
        assert f'<tbody id="server-{server.pk}" class="server">' in content
        row = content.split(f'<tbody id="server-{server.pk}"')[1].split("</tbody>")[0]
        assert server.name in row
        assert f'<span class="badge badge-{status}">{label}</span>' in row
    assert "connection refused" in content  # the last error of the unhealthy server
    assert "1 tool available" in content  # only the healthy server's tools are usable
    # rows in name order
    positions = [content.index(f"server-{made[k].pk}") for k in ("down", "new", "off", "up")]
    assert positions == sorted(positions)


@pytest.mark.django_db
def test_check_now_is_shown_only_to_users_who_may_change_servers(viewer: Client, checker: Client) -> None:
    made = servers()

    as_viewer = viewer.get(CATALOG).content.decode()
    as_checker = checker.get(CATALOG).content.decode()

    assert "Check now" not in as_viewer
    assert "hx-post" not in as_viewer
    assert as_checker.count("Check now") == 3  # every enabled server; not the disabled one
    for key in ("up", "down", "new"):
        assert f'hx-post="/registry/catalog/servers/{made[key].pk}/check/"' in as_checker
    assert f"/registry/catalog/servers/{made['off'].pk}/check/" not in as_checker


@pytest.mark.django_db
def test_empty_catalog_points_to_the_admin(viewer: Client) -> None:
    response = viewer.get(CATALOG)

    assert response.status_code == 200
    assert b"No servers registered yet" in response.content
    assert b"/admin/registry/mcpserver/add/" in response.content


# --- check now (htmx fragment) ------------------------------------------------------------------


@pytest.mark.django_db
def test_check_now_returns_only_the_updated_row(checker: Client) -> None:
    server = MCPServer.objects.create(name="down-server", url=CLOSED_PORT_URL, connect_timeout=5)

    response = checker.post(f"/registry/catalog/servers/{server.pk}/check/", HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    content = response.content.decode()
    assert content.strip().startswith(f'<tbody id="server-{server.pk}" class="server">')
    assert content.strip().endswith("</tbody>")
    assert "<html" not in content and "Tool catalog" not in content
    assert '<span class="badge badge-unhealthy">Unhealthy</span>' in content
    assert "127.0.0.1:9" in html.unescape(content)  # the recorded error is shown
    assert 'class="small error">checked in' in content
    server.refresh_from_db()
    assert server.status == ServerStatus.UNHEALTHY and server.last_checked_at is not None


@pytest.mark.django_db
def test_check_now_against_a_real_server_shows_it_healthy_with_its_tools(checker: Client) -> None:
    with mcp_demo_server("http") as running:
        server = MCPServer.objects.create(name="demo", url=f"{running.base_url}/mcp")
        response = checker.post(f"/registry/catalog/servers/{server.pk}/check/", HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    content = response.content.decode()
    assert '<span class="badge badge-healthy">Healthy</span>' in content
    assert "<html" not in content
    server.refresh_from_db()
    assert server.status == ServerStatus.HEALTHY
    assert f"<td>{server.tool_count}</td>" in content and server.tool_count > 0


@pytest.mark.django_db
def test_check_now_needs_the_change_permission(viewer: Client) -> None:
    server = MCPServer.objects.create(name="down-server", url=CLOSED_PORT_URL)

    response = viewer.post(f"/registry/catalog/servers/{server.pk}/check/", HTTP_HX_REQUEST="true")

    assert response.status_code == 403
    server.refresh_from_db()
    assert server.last_checked_at is None and server.status == ServerStatus.UNKNOWN


@pytest.mark.django_db
def test_check_now_is_post_only_and_404_for_an_unknown_server(checker: Client) -> None:
    server = MCPServer.objects.create(name="down-server", url=CLOSED_PORT_URL)

    assert checker.get(f"/registry/catalog/servers/{server.pk}/check/").status_code == 405
    unknown = checker.post("/registry/catalog/servers/6f1c2a8e-0000-4000-8000-000000000000/check/")
    assert unknown.status_code == 404
    server.refresh_from_db()
    assert server.last_checked_at is None


@pytest.mark.django_db
def test_check_now_on_a_disabled_server_leaves_it_disabled(checker: Client) -> None:
    server = MCPServer.objects.create(
        name="off-server", url=CLOSED_PORT_URL, enabled=False, status=ServerStatus.DISABLED
    )

    response = checker.post(f"/registry/catalog/servers/{server.pk}/check/", HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    assert '<span class="badge badge-disabled">Disabled</span>' in response.content.decode()
    assert "Check now" not in response.content.decode()
    server.refresh_from_db()
    assert server.status == ServerStatus.DISABLED and server.last_checked_at is None


# --- tool list fragment ------------------------------------------------------------------------


@pytest.mark.django_db
def test_tools_fragment_shows_the_json_schema_of_a_cached_tool(viewer: Client) -> None:
    server = _with_tools(MCPServer.objects.create(name="cached", url=CLOSED_PORT_URL), [TOOL])

    response = viewer.get(f"/registry/catalog/servers/{server.pk}/tools/", HTTP_HX_REQUEST="true")

    assert response.status_code == 200
    content = response.content.decode()
    assert "<html" not in content
    assert "<code>t1</code>" in content
    assert '<span class="tag ok">read-only</span>' in content
    schema = html.unescape(content.split('<pre class="schema">')[1].split("</pre>")[0])
    assert schema == (
        '{\n  "properties": {\n    "x": {\n      "type": "integer"\n    }\n  },\n  "type": "object"\n}'
    )


@pytest.mark.django_db
def test_tools_fragment_escapes_tool_text(viewer: Client) -> None:
    hostile = {**TOOL, "name": "<img src=x onerror=alert(1)>", "description": "<script>alert(2)</script>"}
    server = _with_tools(MCPServer.objects.create(name="hostile", url=CLOSED_PORT_URL), [hostile])

    response = viewer.get(f"/registry/catalog/servers/{server.pk}/tools/")

    content = response.content.decode()
    assert "<script>" not in content and "<img" not in content
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in content


@pytest.mark.django_db
def test_tools_fragment_without_cached_tools(viewer: Client) -> None:
    server = MCPServer.objects.create(name="empty", url=CLOSED_PORT_URL)

    response = viewer.get(f"/registry/catalog/servers/{server.pk}/tools/")

    assert response.status_code == 200
    assert b"No tools cached" in response.content
    assert b"<html" not in response.content


@pytest.mark.django_db
def test_tools_fragment_needs_the_view_permission(login: Callable[..., Client]) -> None:
    server = _with_tools(MCPServer.objects.create(name="cached", url=CLOSED_PORT_URL), [TOOL])

    response = login("registry.change_mcpserver").get(f"/registry/catalog/servers/{server.pk}/tools/")

    assert response.status_code == 403
    assert b"t1" not in response.content


# --- login page --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_login_page_renders_a_password_field() -> None:
    response = Client().get("/accounts/login/")

    assert response.status_code == 200
    content = response.content.decode()
    assert 'type="password"' in content and 'name="password"' in content
    assert 'name="username"' in content
    assert 'name="csrfmiddlewaretoken"' in content


@pytest.mark.django_db
def test_logging_in_leads_to_the_catalog(make_user: Callable[..., User]) -> None:
    make_user("viewer", "registry.view_mcpserver")
    client = Client()

    response = client.post(
        "/accounts/login/", {"username": "viewer", "password": "pw-for-tests-1", "next": CATALOG}, follow=True
    )

    assert response.redirect_chain[-1] == (CATALOG, 302)
    assert response.status_code == 200
    assert b"Tool catalog" in response.content
