"""Who may point a secret somewhere, and who may touch a program netops starts.

Issue 9: an editor with ``add``/``change`` on MCP servers could set any secret reference, or move
an entry that carries one to a URL of their choosing and receive the secret there; a non-superuser
could re-enable (or rename, or delete) a superuser's stdio server; view-only users saw raw stdio
``env`` values. Now setting a reference, or moving an entry that carries one, needs
``registry.manage_secrets``; every change to a stdio server needs a superuser; raw env values are
masked for everyone without the permission. Checked over the REST API and in the admin.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from registry.models import LLMModel, MCPServer, ServerStatus

MCP_EDIT = ["registry.view_mcpserver", "registry.add_mcpserver", "registry.change_mcpserver"]
LLM_EDIT = ["registry.view_llmmodel", "registry.add_llmmodel", "registry.change_llmmodel"]
MANAGE = "registry.manage_secrets"
RAW_ENV_VALUE = "internal-value-6a2f9c"
FORBIDDEN_BODY = "needs the permission registry.manage_secrets"


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def attacker_url() -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Recorder,), {"seen": seen}))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/mcp", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def editor(make_user: Callable[..., User], token_client: Callable[[User | None], APIClient]) -> APIClient:
    return token_client(make_user("editor", *MCP_EDIT, *LLM_EDIT))


@pytest.fixture
def secrets_manager(
    make_user: Callable[..., User], token_client: Callable[[User | None], APIClient]
) -> APIClient:
    return token_client(make_user("keeper", *MCP_EDIT, *LLM_EDIT, MANAGE))


def _http(name: str, **fields: Any) -> MCPServer:
    fields.setdefault("url", "http://127.0.0.1:9/mcp")
    return MCPServer.objects.create(name=name, protocol="http", **fields)


def _forbidden(response: Any, field: str) -> None:
    assert response.status_code == 403, response.content
    body = response.json()
    assert body["error"].startswith(f"{field}: ") and "registry.manage_secrets" in body["error"], body
    assert field in body["errors"]


# --- secret references need registry.manage_secrets -----------------------------------------------


@pytest.mark.django_db
def test_editor_without_manage_secrets_cannot_set_a_reference(editor: APIClient) -> None:
    server = {
        "name": "s",
        "protocol": "http",
        "url": "http://127.0.0.1:9/mcp",
        "auth_secret_ref": "env:A_TOKEN",
    }
    model = {"name": "m", "provider": "openai", "model": "m", "api_key_ref": "env:OPENAI_API_KEY"}

    _forbidden(editor.post("/api/mcp-servers/", server, format="json"), "auth_secret_ref")
    _forbidden(editor.post("/api/llm-models/", model, format="json"), "api_key_ref")
    _forbidden(
        editor.post(
            "/api/llm-models/", {**model, "api_key_ref": "", "model_secret_key": "env:X_KEY"}, format="json"
        ),
        "api_key_ref",
    )
    existing = _http("plain")
    _forbidden(
        editor.patch(f"/api/mcp-servers/{existing.pk}/", {"auth_secret_ref": "env:A_TOKEN"}, format="json"),
        "auth_secret_ref",
    )
    _forbidden(
        editor.patch(
            f"/api/mcp-servers/{existing.pk}/", {"env": {"API_TOKEN": "env:A_TOKEN"}}, format="json"
        ),
        "env",
    )
    assert not LLMModel.objects.exists()
    assert MCPServer.objects.get().auth_secret_ref == ""


@pytest.mark.django_db
def test_editor_cannot_move_an_entry_that_carries_a_reference(
    editor: APIClient, attacker_url: tuple[str, list[dict[str, str]]]
) -> None:
    url, seen = attacker_url
    server = _http("holder", auth_secret_ref="env:A_TOKEN")
    model = LLMModel.objects.create(
        name="m",
        provider="openai_compatible",
        endpoint="http://127.0.0.1:9/v1",
        model="m",
        api_key_ref="env:B_KEY",
    )

    for field, value in [
        ("url", url),
        ("health_check", "/other"),
        ("protocol", "sse"),
        ("auth_header", "X-Leak"),
    ]:
        _forbidden(editor.patch(f"/api/mcp-servers/{server.pk}/", {field: value}, format="json"), field)
    _forbidden(editor.patch(f"/api/llm-models/{model.pk}/", {"endpoint": url}, format="json"), "endpoint")
    _forbidden(
        editor.patch(f"/api/llm-models/{model.pk}/", {"azure_endpoint": url}, format="json"), "endpoint"
    )

    server.refresh_from_db()
    model.refresh_from_db()
    assert server.url == "http://127.0.0.1:9/mcp" and model.endpoint == "http://127.0.0.1:9/v1"
    # The rest of the entry stays editable.
    assert (
        editor.patch(f"/api/mcp-servers/{server.pk}/", {"description": "d"}, format="json").status_code == 200
    )
    assert (
        editor.patch(f"/api/llm-models/{model.pk}/", {"temperature": 0.5}, format="json").status_code == 200
    )
    assert seen == []


@pytest.mark.django_db
def test_editor_may_move_an_entry_without_a_reference(editor: APIClient) -> None:
    server = _http("plain")

    response = editor.patch(
        f"/api/mcp-servers/{server.pk}/", {"url": "http://127.0.0.1:8/mcp"}, format="json"
    )
    created = editor.post(
        "/api/mcp-servers/",
        {"name": "new", "protocol": "http", "url": "http://127.0.0.1:7/mcp"},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert created.status_code == 201, created.content
    server.refresh_from_db()
    assert server.url == "http://127.0.0.1:8/mcp"


@pytest.mark.django_db
def test_manage_secrets_may_set_and_move_references(secrets_manager: APIClient) -> None:
    created = secrets_manager.post(
        "/api/mcp-servers/",
        {"name": "s", "protocol": "http", "url": "http://127.0.0.1:9/mcp", "auth_secret_ref": "env:A_TOKEN"},
        format="json",
    )
    assert created.status_code == 201, created.content
    moved = secrets_manager.patch(
        f"/api/mcp-servers/{created.json()['id']}/", {"url": "http://127.0.0.1:8/mcp"}, format="json"
    )
    model = secrets_manager.post(
        "/api/llm-models/",
        {"name": "m", "provider": "openai", "model": "m", "api_key_ref": "env:OPENAI_API_KEY"},
        format="json",
    )

    assert moved.status_code == 200, moved.content
    assert model.status_code == 201, model.content
    assert MCPServer.objects.get().url == "http://127.0.0.1:8/mcp"


@pytest.mark.django_db
def test_admin_shows_secret_fields_read_only_without_manage_secrets(make_user: Callable[..., User]) -> None:
    client = Client()
    client.force_login(make_user("staff", *MCP_EDIT, *LLM_EDIT, staff=True))
    server = _http("holder", auth_secret_ref="env:A_TOKEN")
    plain = _http("plain")

    holder_form = client.get(f"/admin/registry/mcpserver/{server.pk}/change/").context["adminform"].form
    plain_form = client.get(f"/admin/registry/mcpserver/{plain.pk}/change/").context["adminform"].form
    add_form = client.get("/admin/registry/llmmodel/add/").context["adminform"].form

    assert not {"auth_secret_ref", "env", "url", "health_check", "auth_header", "protocol"} & set(
        holder_form.fields
    )
    assert "url" in plain_form.fields and "auth_secret_ref" not in plain_form.fields
    assert "api_key_ref" not in add_form.fields and "endpoint" in add_form.fields

    # A forged POST of the locked fields changes nothing.
    response = client.post(
        f"/admin/registry/mcpserver/{server.pk}/change/",
        {
            "name": "holder",
            "description": "",
            "mcp_type": "internal",
            "enabled": "on",
            "connect_timeout": "5",
            "call_timeout": "60",
            "url": "http://127.0.0.1:8/mcp",
            "auth_secret_ref": "env:SECRET_KEY",
            "_save": "Save",
        },
    )
    assert response.status_code == 302, response.content
    server.refresh_from_db()
    assert (server.url, server.auth_secret_ref) == ("http://127.0.0.1:9/mcp", "env:A_TOKEN")


# --- stdio servers: superusers only; raw env values masked ---------------------------------------------


def _stdio(name: str = "local", **fields: Any) -> MCPServer:
    fields.setdefault("env", {"DEBUG": RAW_ENV_VALUE, "API_TOKEN": "env:A_TOKEN"})
    return MCPServer.objects.create(name=name, protocol="stdio", command="/usr/bin/true", **fields)


@pytest.mark.django_db
def test_non_superuser_cannot_change_or_delete_a_stdio_server(
    make_user: Callable[..., User], token_client: Callable[[User | None], APIClient]
) -> None:
    server = _stdio(enabled=False, status=ServerStatus.DISABLED)
    everything = [f"registry.{a}_mcpserver" for a in ("view", "add", "change", "delete")] + [MANAGE]
    engineer = token_client(make_user("engineer", *everything))

    for change in [{"enabled": True}, {"name": "renamed"}, {"call_timeout": 5}, {"description": "x"}]:
        response = engineer.patch(f"/api/mcp-servers/{server.pk}/", change, format="json")
        assert response.status_code == 403, response.content
        assert response.json()["error"].startswith("protocol: stdio servers")
    deleted = engineer.delete(f"/api/mcp-servers/{server.pk}/")

    assert deleted.status_code == 403
    server.refresh_from_db()
    assert (server.enabled, server.name, server.status) == (False, "local", ServerStatus.DISABLED)
    root = token_client(make_user("root", superuser=True))
    assert root.patch(f"/api/mcp-servers/{server.pk}/", {"enabled": True}, format="json").status_code == 200


@pytest.mark.django_db
def test_non_superuser_cannot_change_a_stdio_server_in_the_admin(make_user: Callable[..., User]) -> None:
    server = _stdio(enabled=False, status=ServerStatus.DISABLED)
    client = Client()
    perms = [f"registry.{a}_mcpserver" for a in ("view", "add", "change", "delete")] + [MANAGE]
    client.force_login(make_user("staff", *perms, staff=True))

    page = client.get(f"/admin/registry/mcpserver/{server.pk}/change/")
    posted = client.post(
        f"/admin/registry/mcpserver/{server.pk}/change/",
        {"name": "local", "enabled": "on", "connect_timeout": "5", "call_timeout": "60", "_save": "Save"},
    )
    delete = client.post(f"/admin/registry/mcpserver/{server.pk}/delete/", {"post": "yes"})
    bulk = client.post(
        "/admin/registry/mcpserver/",
        {"action": "delete_selected", "_selected_action": [str(server.pk)], "post": "yes"},
    )

    assert page.status_code == 200 and page.context["has_change_permission"] is False
    assert posted.status_code == 403
    assert delete.status_code == 403
    assert bulk.status_code == 403
    server.refresh_from_db()
    assert server.enabled is False


@pytest.mark.django_db
def test_view_only_user_never_sees_raw_env_values(
    make_user: Callable[..., User], token_client: Callable[[User | None], APIClient]
) -> None:
    server = _stdio()
    viewer = make_user("viewer", "registry.view_mcpserver", staff=True)

    detail = token_client(viewer).get(f"/api/mcp-servers/{server.pk}/")
    listing = token_client(viewer).get("/api/mcp-servers/")
    admin = Client()
    admin.force_login(viewer)
    page = admin.get(f"/admin/registry/mcpserver/{server.pk}/change/")

    assert detail.status_code == 200 and listing.status_code == 200 and page.status_code == 200
    assert detail.json()["env"] == {"DEBUG": "••••", "API_TOKEN": "env:A_TOKEN"}
    for body in (detail.content, listing.content, page.content):
        assert RAW_ENV_VALUE.encode() not in body
    root = token_client(make_user("root", superuser=True))
    assert root.get(f"/api/mcp-servers/{server.pk}/").json()["env"]["DEBUG"] == RAW_ENV_VALUE


@pytest.mark.django_db
def test_a_masked_env_value_sent_back_keeps_the_stored_value(
    make_user: Callable[..., User], token_client: Callable[[User | None], APIClient]
) -> None:
    server = _stdio()
    root = token_client(make_user("root", superuser=True))

    response = root.patch(
        f"/api/mcp-servers/{server.pk}/",
        {"env": {"DEBUG": "••••", "API_TOKEN": "env:A_TOKEN"}},
        format="json",
    )

    assert response.status_code == 200, response.content
    server.refresh_from_db()
    assert server.env["DEBUG"] == RAW_ENV_VALUE
