"""The Django admin of the registry: list pages, forms, the health-check action, saves through services."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from registry.models import LLMModel, MCPServer, ServerStatus

CLOSED_PORT_URL = "http://127.0.0.1:9/mcp"  # the discard port: nothing listens on loopback
MCP_PERMS = [f"registry.{a}_mcpserver" for a in ("view", "add", "change", "delete")]


@pytest.fixture
def admin_client(admin_user: User) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


@pytest.fixture
def staff_client(make_user: Callable[..., User]) -> Client:
    """A staff member with every registry model permission, but not a superuser."""
    client = Client()
    client.force_login(make_user("staff", *MCP_PERMS, staff=True))
    return client


def llm_form(name: str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "description": "",
        "provider": "openai_compatible",
        "endpoint": "http://127.0.0.1:11434/v1",
        "api_version": "",
        "model": "llama3.1",
        "api_key_ref": "",
        "temperature": "0.0",
        "max_tokens": "",
        "request_timeout": "60",
        "_save": "Save",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def mcp_form(name: str, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": name,
        "description": "",
        "mcp_type": "internal",
        "enabled": "on",
        "protocol": "http",
        "url": CLOSED_PORT_URL,
        "health_check": "/health",
        "connect_timeout": "5",
        "call_timeout": "60",
        "auth_header": "Authorization",
        "auth_scheme": "Bearer",
        "auth_secret_ref": "",
        "_save": "Save",
    }
    data.update(overrides)
    return data


def messages_of(response: Any) -> list[tuple[str, str]]:
    return [(m.level_tag, m.message) for m in response.context["messages"]]


@pytest.mark.django_db
def test_llm_model_changelist_renders_its_columns(admin_client: Client) -> None:
    LLMModel.objects.create(
        name="local-llama",
        provider="openai_compatible",
        endpoint="http://127.0.0.1:11434/v1",
        model="llama3.1",
    )

    response = admin_client.get("/admin/registry/llmmodel/")

    assert response.status_code == 200
    content = response.content.decode()
    for column in ("name", "provider", "model", "endpoint", "is_default", "temperature", "last_updated"):
        assert f'class="sortable column-{column}' in content or f'class="column-{column}' in content, column
    assert "local-llama" in content and "http://127.0.0.1:11434/v1" in content
    assert response.context["cl"].result_count == 1


@pytest.mark.django_db
def test_mcp_server_changelist_renders_its_columns_and_status_badge(admin_client: Client) -> None:
    MCPServer.objects.create(name="inventory", url="http://127.0.0.1:8001/mcp", status=ServerStatus.HEALTHY)
    MCPServer.objects.create(
        name="local", protocol="stdio", command="python3", args=["-m", "tool"], status=ServerStatus.UNHEALTHY
    )

    response = admin_client.get("/admin/registry/mcpserver/")

    assert response.status_code == 200
    content = response.content.decode()
    for column in ("name", "protocol", "target", "mcp_type", "enabled", "status_badge", "tool_count"):
        assert f"column-{column}" in content, column
    assert "URL / command" in content
    assert "http://127.0.0.1:8001/mcp" in content
    assert "python3 -m tool" in content  # stdio target is the command line
    assert '<span class="status-badge status-healthy">Healthy</span>' in content
    assert '<span class="status-badge status-unhealthy">Unhealthy</span>' in content
    assert "style=" not in content.split('id="result_list"', 1)[1]  # the CSP refuses inline styles
    assert response.context["cl"].result_count == 2


@pytest.mark.django_db
def test_llm_add_form_explains_secret_references(admin_client: Client) -> None:
    response = admin_client.get("/admin/registry/llmmodel/add/")

    assert response.status_code == 200
    content = response.content.decode()
    assert 'name="api_key_ref"' in content
    assert "A secret reference, not the secret" in content
    assert "env:VARIABLE" in content and "file:/run/secrets/name" in content


@pytest.mark.django_db
def test_llm_add_form_refuses_a_pasted_secret(admin_client: Client) -> None:
    response = admin_client.post(
        "/admin/registry/llmmodel/add/", llm_form("m", api_key_ref="sk-live-abcdef123456")
    )

    assert response.status_code == 200  # the form again, with the error
    assert "api_key_ref" in response.context["adminform"].form.errors
    assert not LLMModel.objects.exists()


@pytest.mark.django_db
def test_run_health_check_action_records_unhealthy_and_reports_the_error(admin_client: Client) -> None:
    server = MCPServer.objects.create(name="down", url=CLOSED_PORT_URL, connect_timeout=5)
    other = MCPServer.objects.create(name="not-selected", url=CLOSED_PORT_URL)

    response = admin_client.post(
        "/admin/registry/mcpserver/",
        {"action": "run_health_check", "_selected_action": [str(server.pk)], "index": "0"},
        follow=True,
    )

    assert response.status_code == 200
    assert response.redirect_chain == [("/admin/registry/mcpserver/", 302)]
    server.refresh_from_db()
    assert server.status == ServerStatus.UNHEALTHY
    assert server.last_checked_at is not None
    assert "127.0.0.1:9" in server.last_error
    errors = [text for level, text in messages_of(response) if level == "error"]
    assert len(errors) == 1
    assert errors[0].startswith("down: ") and errors[0].endswith("; status unhealthy")
    assert "127.0.0.1:9" in errors[0]
    assert "status unhealthy" in response.content.decode()
    other.refresh_from_db()
    assert other.status == ServerStatus.UNKNOWN and other.last_checked_at is None


@pytest.mark.django_db
def test_run_health_check_action_skips_disabled_servers(admin_client: Client) -> None:
    server = MCPServer.objects.create(
        name="off", url=CLOSED_PORT_URL, enabled=False, status=ServerStatus.DISABLED
    )

    response = admin_client.post(
        "/admin/registry/mcpserver/",
        {"action": "run_health_check", "_selected_action": [str(server.pk)], "index": "0"},
        follow=True,
    )

    assert ("warning", "1 disabled server(s) skipped") in messages_of(response)
    server.refresh_from_db()
    assert server.status == ServerStatus.DISABLED and server.last_checked_at is None


@pytest.mark.django_db
def test_run_health_check_action_needs_the_change_permission(make_user: Callable[..., User]) -> None:
    server = MCPServer.objects.create(name="down", url=CLOSED_PORT_URL)
    client = Client()
    client.force_login(make_user("viewer", "registry.view_mcpserver", staff=True))

    listing = client.get("/admin/registry/mcpserver/")
    client.post(
        "/admin/registry/mcpserver/",
        {"action": "run_health_check", "_selected_action": [str(server.pk)], "index": "0"},
    )

    assert listing.status_code == 200
    assert 'value="run_health_check"' not in listing.content.decode()
    server.refresh_from_db()
    assert server.last_checked_at is None and server.status == ServerStatus.UNKNOWN


@pytest.mark.django_db
def test_staff_without_superuser_cannot_choose_stdio(staff_client: Client, admin_client: Client) -> None:
    staff_form = staff_client.get("/admin/registry/mcpserver/add/")
    root_form = admin_client.get("/admin/registry/mcpserver/add/")

    assert staff_form.status_code == 200
    staff_choices = [value for value, _ in staff_form.context["adminform"].form.fields["protocol"].choices]
    assert "stdio" not in staff_choices
    assert {"http", "sse", "rest"} <= set(staff_choices)
    assert '<option value="stdio"' not in staff_form.content.decode()
    assert '<option value="http"' in staff_form.content.decode()
    assert '<option value="stdio"' in root_form.content.decode()  # a superuser may


@pytest.mark.django_db
def test_staff_without_superuser_cannot_post_a_stdio_server(staff_client: Client) -> None:
    data = mcp_form("local", protocol="stdio", url="", command="/bin/sh", args='["-c", "id"]', env="{}")

    response = staff_client.post("/admin/registry/mcpserver/add/", data)

    assert response.status_code == 200  # the form again
    assert "protocol" in response.context["adminform"].form.errors
    assert not MCPServer.objects.exists()


@pytest.mark.django_db
def test_staff_can_add_an_http_server(staff_client: Client) -> None:
    response = staff_client.post("/admin/registry/mcpserver/add/", mcp_form("inventory"))

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    server = MCPServer.objects.get(name="inventory")
    assert (server.protocol, server.url, server.command) == ("http", CLOSED_PORT_URL, "")
    assert server.status == ServerStatus.UNKNOWN


@pytest.mark.django_db
def test_disabling_a_server_in_the_admin_goes_through_the_service(admin_client: Client) -> None:
    server = MCPServer.objects.create(name="inventory", url=CLOSED_PORT_URL, status=ServerStatus.HEALTHY)
    data = mcp_form("inventory", command="", args="[]", env="{}")
    del data["enabled"]  # an unchecked box is absent

    response = admin_client.post(f"/admin/registry/mcpserver/{server.pk}/change/", data)

    assert response.status_code == 302
    server.refresh_from_db()
    assert server.enabled is False
    assert server.status == ServerStatus.DISABLED  # the service's rule, not the form's


@pytest.mark.django_db
def test_llm_model_saved_in_the_admin_becomes_the_first_default(admin_client: Client) -> None:
    response = admin_client.post("/admin/registry/llmmodel/add/", llm_form("local-llama"))  # box unchecked

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    model = LLMModel.objects.get(name="local-llama")
    assert model.is_default is True
    assert (model.provider, model.endpoint, model.model) == (
        "openai_compatible",
        "http://127.0.0.1:11434/v1",
        "llama3.1",
    )


@pytest.mark.django_db
def test_llm_model_made_default_in_the_admin_replaces_the_previous_default(admin_client: Client) -> None:
    admin_client.post("/admin/registry/llmmodel/add/", llm_form("first"))

    response = admin_client.post("/admin/registry/llmmodel/add/", llm_form("second", is_default="on"))

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    assert list(LLMModel.objects.filter(is_default=True).values_list("name", flat=True)) == ["second"]


@pytest.mark.django_db
def test_llm_default_cannot_be_unset_in_the_admin(admin_client: Client) -> None:
    admin_client.post("/admin/registry/llmmodel/add/", llm_form("first"))
    model = LLMModel.objects.get(name="first")

    # the box unchecked on the one default: the form comes back with the service's reason
    response = admin_client.post(f"/admin/registry/llmmodel/{model.pk}/change/", llm_form("first"))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "default model cannot be unset" in str(errors.get("is_default") or errors)
    model.refresh_from_db()
    assert model.is_default is True


@pytest.mark.django_db
def test_deleting_the_default_in_the_admin_promotes_another(admin_client: Client) -> None:
    first = LLMModel.objects.create(name="first", provider="openai", model="a", is_default=True)
    LLMModel.objects.create(name="second", provider="openai", model="b")

    response = admin_client.post(f"/admin/registry/llmmodel/{first.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not LLMModel.objects.filter(pk=first.pk).exists()
    assert list(LLMModel.objects.filter(is_default=True).values_list("name", flat=True)) == ["second"]
