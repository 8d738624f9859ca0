"""REST API of the registry: ``/api/llm-models/`` and ``/api/mcp-servers/``, and the plugin-path aliases.

Routine CRUD and permission cases are a generated suite (prefix x resource x action); the important
paths — the one-default rule under concurrency, secrets never leaving the process, the schema — are
written out by hand.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.db.models import Model
from django.test import Client
from rest_framework.test import APIClient

from netops.errors import ConflictError
from netops.logs import RedactSecretsFilter
from netops.secrets import resolve_secret
from registry import services
from registry.models import LLMModel, MCPServer, ServerStatus
from registry.tool_sync import server_tools_sync

PREFIXES = ["/api/", "/api/plugins/ai-ops/"]

# The reference document's create examples. The reference sends a bare secret *name* as
# model_secret_key; netops requires a secret reference, so the example uses "env:...".
LLM_CREATE = {
    "name": "gpt-4-turbo",
    "description": "Fast GPT-4 model",
    "model_secret_key": "env:AZURE_GPT4_KEY",
    "azure_endpoint": "https://your-resource.openai.azure.com/",
    "api_version": "2024-02-15-preview",
    "is_default": False,
    "temperature": 0.3,
}
MCP_CREATE = {
    "name": "new-mcp-server",
    "protocol": "http",
    "url": "https://mcp.example.com",
    "health_check": "/health",
    "description": "External MCP server",
    "mcp_type": "external",
    "status": "healthy-status-id",  # read-only: must be ignored
}
LLM_PATCH = {"temperature": 0.5, "description": "Updated description"}
MCP_PATCH = {"description": "Analytics and reporting MCP"}

PASTED_SECRET = "sk-live-abcdef123456"
SECRET = "s3cr3t-value-for-tests"
CLOSED_PORT_URL = "http://127.0.0.1:9/mcp"  # the discard port: nothing listens on loopback


# --- helpers -----------------------------------------------------------------------------------


def make_llm(name: str, **fields: Any) -> LLMModel:
    """An LLM model written straight to the database (the first one is the default)."""
    fields.setdefault("provider", "openai")
    fields.setdefault("model", name)
    fields.setdefault("is_default", not LLMModel.objects.filter(is_default=True).exists())
    return LLMModel.objects.create(name=name, **fields)


def make_mcp(name: str, **fields: Any) -> MCPServer:
    """An MCP server written straight to the database."""
    fields.setdefault("protocol", "http")
    fields.setdefault("url", CLOSED_PORT_URL)
    return MCPServer.objects.create(name=name, **fields)


@dataclass(frozen=True)
class Resource:
    """One REST resource of the registry, as the generated suite sees it."""

    path: str
    model: type[Model]
    codename: str
    create_payload: dict[str, Any]
    patch_payload: dict[str, Any]
    make: Callable[[str], Model]

    def perm(self, action: str) -> str:
        return f"registry.{action}_{self.codename}"

    def all_perms(self) -> list[str]:
        return [self.perm(a) for a in ("view", "add", "change", "delete")]


RESOURCES = {
    "llm-models": Resource("llm-models", LLMModel, "llmmodel", LLM_CREATE, LLM_PATCH, make_llm),
    "mcp-servers": Resource("mcp-servers", MCPServer, "mcpserver", MCP_CREATE, MCP_PATCH, make_mcp),
}


@dataclass(frozen=True)
class Action:
    """One routine API action: its HTTP method, whether it targets one object, its permission."""

    name: str
    method: str
    detail: bool
    perm: str
    ok_status: int


ACTIONS = [
    Action("list", "get", False, "view", 200),
    Action("retrieve", "get", True, "view", 200),
    Action("create", "post", False, "add", 201),
    Action("partial_update", "patch", True, "change", 200),
    Action("destroy", "delete", True, "delete", 204),
]

resource_params = pytest.mark.parametrize("resource", list(RESOURCES.values()), ids=list(RESOURCES))
action_params = pytest.mark.parametrize("action", ACTIONS, ids=[a.name for a in ACTIONS])
prefix_params = pytest.mark.parametrize("prefix", PREFIXES, ids=["api", "plugin-alias"])


def call(client: APIClient, prefix: str, resource: Resource, action: Action, obj: Model) -> Any:
    url = f"{prefix}{resource.path}/" + (f"{obj.pk}/" if action.detail else "")
    send = getattr(client, action.method)
    if action.name == "create":
        return send(url, resource.create_payload, format="json")
    if action.name == "partial_update":
        return send(url, resource.patch_payload, format="json")
    return send(url)


@dataclass
class Snapshot:
    """What the database held before a refused request: it must hold exactly that afterwards."""

    count: int
    obj: dict[str, Any]


def snapshot(resource: Resource, obj: Model) -> Snapshot:
    values = resource.model.objects.filter(pk=obj.pk).values().get()  # type: ignore[attr-defined]
    return Snapshot(resource.model.objects.count(), values)  # type: ignore[attr-defined]


def assert_unchanged(resource: Resource, before: Snapshot, obj: Model) -> None:
    manager = resource.model.objects  # type: ignore[attr-defined]
    assert manager.count() == before.count
    assert manager.filter(pk=obj.pk).values().get() == before.obj
    assert not manager.filter(name=resource.create_payload["name"]).exists()


def assert_effect(resource: Resource, action: Action, obj: Model, response: Any) -> None:
    manager = resource.model.objects  # type: ignore[attr-defined]
    body = response.json() if response.content else None
    if action.name == "list":
        assert body["count"] == manager.count() == 1
        assert [r["id"] for r in body["results"]] == [str(obj.pk)]
    elif action.name == "retrieve":
        assert body["id"] == str(obj.pk)
        assert body["name"] == obj.name  # type: ignore[attr-defined]
    elif action.name == "create":
        created = manager.get(name=resource.create_payload["name"])
        assert body["id"] == str(created.pk)
    elif action.name == "partial_update":
        stored = manager.get(pk=obj.pk)
        for name, value in resource.patch_payload.items():
            assert getattr(stored, name) == value
            assert body[name] == value
    elif action.name == "destroy":
        assert response.content == b""
        assert not manager.filter(pk=obj.pk).exists()


def error_of(response: Any) -> str:
    body = response.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    return str(body["error"])


# --- generated suite: permissions ----------------------------------------------------------------


@pytest.mark.django_db
@prefix_params
@resource_params
@action_params
def test_anonymous_caller_is_refused(
    token_client: Callable[[User | None], APIClient], prefix: str, resource: Resource, action: Action
) -> None:
    obj = resource.make("existing")
    before = snapshot(resource, obj)

    response = call(token_client(None), prefix, resource, action, obj)

    assert response.status_code == 401  # token auth offers a WWW-Authenticate challenge
    assert response.headers["WWW-Authenticate"] == "Token"
    assert error_of(response) == "Authentication credentials were not provided."
    assert_unchanged(resource, before, obj)


@pytest.mark.django_db
@prefix_params
@resource_params
@action_params
def test_invalid_token_is_refused(
    prefix: str, resource: Resource, action: Action, make_user: Callable[..., User]
) -> None:
    make_user("holder", *resource.all_perms())
    obj = resource.make("existing")
    before = snapshot(resource, obj)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")

    response = call(client, prefix, resource, action, obj)

    assert response.status_code == 401
    assert error_of(response) == "Invalid token."
    assert_unchanged(resource, before, obj)


@pytest.mark.django_db
@prefix_params
@resource_params
@action_params
def test_user_without_model_permissions_is_forbidden(
    make_user: Callable[..., User],
    token_client: Callable[[User | None], APIClient],
    prefix: str,
    resource: Resource,
    action: Action,
) -> None:
    client = token_client(make_user("nobody"))
    obj = resource.make("existing")
    before = snapshot(resource, obj)

    response = call(client, prefix, resource, action, obj)

    assert response.status_code == 403
    assert error_of(response) == "You do not have permission to perform this action."
    assert_unchanged(resource, before, obj)


@pytest.mark.django_db
@prefix_params
@resource_params
@action_params
def test_the_actions_own_permission_is_enough(
    make_user: Callable[..., User],
    token_client: Callable[[User | None], APIClient],
    prefix: str,
    resource: Resource,
    action: Action,
) -> None:
    # LLM_CREATE carries a secret reference (model_secret_key): setting one also needs
    # registry.manage_secrets (tests/security/test_registry_permissions.py); add alone is not enough.
    carries_ref = action.name == "create" and "model_secret_key" in resource.create_payload
    extra = ["registry.manage_secrets"] if carries_ref else []
    client = token_client(make_user("scoped", resource.perm(action.perm), *extra))
    obj = resource.make("existing")

    response = call(client, prefix, resource, action, obj)

    assert response.status_code == action.ok_status, response.content
    assert_effect(resource, action, obj, response)


@pytest.mark.django_db
@prefix_params
@resource_params
@action_params
def test_every_other_permission_is_not_enough(
    make_user: Callable[..., User],
    token_client: Callable[[User | None], APIClient],
    prefix: str,
    resource: Resource,
    action: Action,
) -> None:
    others = [p for p in resource.all_perms() if p != resource.perm(action.perm)]
    client = token_client(make_user("almost", *others))
    obj = resource.make("existing")
    before = snapshot(resource, obj)

    response = call(client, prefix, resource, action, obj)

    assert response.status_code == 403
    assert "permission" in error_of(response)
    assert_unchanged(resource, before, obj)


@pytest.mark.django_db
@prefix_params
@resource_params
def test_view_permission_reads_but_cannot_write(
    make_user: Callable[..., User],
    token_client: Callable[[User | None], APIClient],
    prefix: str,
    resource: Resource,
) -> None:
    client = token_client(make_user("reader", resource.perm("view")))
    obj = resource.make("existing")
    base = f"{prefix}{resource.path}/"

    assert client.get(base).json()["count"] == 1
    assert client.get(f"{base}{obj.pk}/").json()["id"] == str(obj.pk)
    assert client.post(base, resource.create_payload, format="json").status_code == 403
    assert client.patch(f"{base}{obj.pk}/", resource.patch_payload, format="json").status_code == 403
    assert client.delete(f"{base}{obj.pk}/").status_code == 403
    assert resource.model.objects.count() == 1  # type: ignore[attr-defined]


# --- generated suite: CRUD with the reference payloads ----------------------------------------


@pytest.mark.django_db
@prefix_params
@resource_params
def test_list_is_paginated_in_the_reference_shape(
    admin_api: APIClient, prefix: str, resource: Resource
) -> None:
    first, second = resource.make("alpha"), resource.make("beta")

    body = admin_api.get(f"{prefix}{resource.path}/").json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 2 and body["next"] is None and body["previous"] is None
    assert [r["id"] for r in body["results"]] == [str(first.pk), str(second.pk)]  # ordered by name

    page = admin_api.get(f"{prefix}{resource.path}/?limit=1").json()
    assert page["count"] == 2
    assert [r["name"] for r in page["results"]] == ["alpha"]
    assert page["next"] is not None and f"{prefix}{resource.path}/" in page["next"]
    assert "offset=1" in page["next"]


@pytest.mark.django_db
@prefix_params
def test_mcp_server_status_is_an_object_with_value_and_name(admin_api: APIClient, prefix: str) -> None:
    make_mcp("fresh")
    make_mcp("up", status=ServerStatus.HEALTHY)

    results = admin_api.get(f"{prefix}mcp-servers/").json()["results"]

    assert [r["status"] for r in results] == [
        {"value": "unknown", "name": "Unknown"},
        {"value": "healthy", "name": "Healthy"},
    ]


@pytest.mark.django_db
@prefix_params
def test_llm_output_has_azure_endpoint_and_never_the_secret_key(admin_api: APIClient, prefix: str) -> None:
    model = make_llm(
        "gpt-4o",
        provider="azure_openai",
        endpoint="https://res.openai.azure.com/",
        api_version="2024-10-21",
        api_key_ref="env:AZURE_KEY",
    )

    listed = admin_api.get(f"{prefix}llm-models/").json()["results"][0]
    detail = admin_api.get(f"{prefix}llm-models/{model.pk}/").json()

    for body in (listed, detail):
        assert body["azure_endpoint"] == body["endpoint"] == "https://res.openai.azure.com/"
        assert body["api_key_ref"] == "env:AZURE_KEY"  # the reference, which names no secret
        assert "model_secret_key" not in body


@pytest.mark.django_db
@prefix_params
def test_create_llm_model_with_the_reference_payload(admin_api: APIClient, prefix: str) -> None:
    response = admin_api.post(f"{prefix}llm-models/", LLM_CREATE, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert "model_secret_key" not in body
    assert body["azure_endpoint"] == LLM_CREATE["azure_endpoint"]
    assert body["is_default"] is True  # the first model is the default even when not asked
    stored = LLMModel.objects.get(pk=body["id"])
    assert stored.name == "gpt-4-turbo"
    assert stored.description == "Fast GPT-4 model"
    assert stored.api_key_ref == "env:AZURE_GPT4_KEY"
    assert stored.endpoint == "https://your-resource.openai.azure.com/"
    assert stored.api_version == "2024-02-15-preview"
    assert stored.provider == "azure_openai"
    assert stored.model == "gpt-4-turbo"  # the reference has no model id: the name stands in
    assert stored.temperature == 0.3
    assert stored.is_default is True


@pytest.mark.django_db
@prefix_params
def test_create_mcp_server_with_the_reference_payload_ignores_status(
    admin_api: APIClient, prefix: str
) -> None:
    response = admin_api.post(f"{prefix}mcp-servers/", MCP_CREATE, format="json")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == {"value": "unknown", "name": "Unknown"}
    stored = MCPServer.objects.get(pk=body["id"])
    assert stored.status == ServerStatus.UNKNOWN
    assert (stored.name, stored.protocol, stored.url, stored.health_check, stored.mcp_type) == (
        "new-mcp-server",
        "http",
        "https://mcp.example.com",
        "/health",
        "external",
    )
    assert stored.description == "External MCP server"
    assert not stored.tools.exists() and stored.last_checked_at is None


@pytest.mark.django_db
@prefix_params
@resource_params
def test_patch_with_the_reference_payload(admin_api: APIClient, prefix: str, resource: Resource) -> None:
    obj = resource.make("target")

    response = admin_api.patch(f"{prefix}{resource.path}/{obj.pk}/", resource.patch_payload, format="json")

    assert response.status_code == 200, response.content
    obj.refresh_from_db()
    for name, value in resource.patch_payload.items():
        assert response.json()[name] == value
        assert getattr(obj, name) == value
    assert obj.name == "target"  # type: ignore[attr-defined]  # untouched fields stay


@pytest.mark.django_db
@prefix_params
@resource_params
def test_get_detail(admin_api: APIClient, prefix: str, resource: Resource) -> None:
    obj = resource.make("target")
    resource.make("other")

    response = admin_api.get(f"{prefix}{resource.path}/{obj.pk}/")

    assert response.status_code == 200
    assert response.json()["id"] == str(obj.pk)
    assert response.json()["name"] == "target"


@pytest.mark.django_db
@prefix_params
@resource_params
def test_delete(admin_api: APIClient, prefix: str, resource: Resource) -> None:
    obj = resource.make("target")
    other = resource.make("other")

    response = admin_api.delete(f"{prefix}{resource.path}/{obj.pk}/")

    assert response.status_code == 204
    assert response.content == b""
    manager = resource.model.objects  # type: ignore[attr-defined]
    assert list(manager.values_list("pk", flat=True)) == [other.pk]
    assert admin_api.get(f"{prefix}{resource.path}/{obj.pk}/").status_code == 404


@pytest.mark.django_db
@prefix_params
@resource_params
@pytest.mark.parametrize("method", ["get", "patch", "delete"])
@pytest.mark.parametrize("pk", ["6f1c2a8e-0000-4000-8000-000000000000", "not-a-uuid", "42"])
def test_unknown_or_malformed_id_is_404(
    admin_api: APIClient, prefix: str, resource: Resource, method: str, pk: str
) -> None:
    obj = resource.make("existing")
    before = snapshot(resource, obj)

    response = getattr(admin_api, method)(
        f"{prefix}{resource.path}/{pk}/", {"description": "x"}, format="json"
    )

    assert response.status_code == 404
    assert error_of(response) == "Not found."
    assert_unchanged(resource, before, obj)


# --- bad input -------------------------------------------------------------------------------


def _without(payload: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in names}


BAD_INPUT = [
    pytest.param("llm-models", _without(LLM_CREATE, "name"), "name", id="llm-missing-name"),
    pytest.param("llm-models", {**LLM_CREATE, "temperature": 5}, "temperature", id="llm-temperature-5"),
    pytest.param("llm-models", {**LLM_CREATE, "provider": "bogus"}, "provider", id="llm-provider-bogus"),
    pytest.param(
        "llm-models",
        {**_without(LLM_CREATE, "api_version"), "provider": "azure_openai"},
        "api_version",
        id="llm-azure-without-api-version",
    ),
    pytest.param(
        "llm-models",
        {**_without(LLM_CREATE, "model_secret_key"), "api_key_ref": PASTED_SECRET},
        "api_key_ref",
        id="llm-pasted-secret-api-key-ref",
    ),
    pytest.param(
        "llm-models",
        {**LLM_CREATE, "model_secret_key": PASTED_SECRET},
        "model_secret_key",
        id="llm-pasted-secret-model-secret-key",
    ),
    pytest.param(
        "mcp-servers",
        {**MCP_CREATE, "auth_secret_ref": PASTED_SECRET},
        "auth_secret_ref",
        id="mcp-pasted-secret",
    ),
    pytest.param("mcp-servers", _without(MCP_CREATE, "name"), "name", id="mcp-missing-name"),
    pytest.param("mcp-servers", {**MCP_CREATE, "args": "--verbose"}, "args", id="mcp-args-not-a-list"),
    pytest.param("mcp-servers", {**MCP_CREATE, "args": ["-v", 3]}, "args", id="mcp-args-not-strings"),
    pytest.param("mcp-servers", {**MCP_CREATE, "env": {"DEBUG": 1}}, "env", id="mcp-env-non-string"),
    pytest.param(
        "mcp-servers", {**MCP_CREATE, "health_check": "health"}, "health_check", id="mcp-health-no-slash"
    ),
    pytest.param("mcp-servers", _without(MCP_CREATE, "url"), "url", id="mcp-http-without-url"),
]


@pytest.mark.django_db
@prefix_params
@pytest.mark.parametrize(("path", "payload", "field_name"), BAD_INPUT)
def test_bad_input_is_400_naming_the_field(
    admin_api: APIClient, prefix: str, path: str, payload: dict[str, Any], field_name: str
) -> None:
    response = admin_api.post(f"{prefix}{path}/", payload, format="json")

    assert response.status_code == 400, response.content
    body = response.json()
    assert f"{field_name}:" in error_of(response)
    assert field_name in body["errors"]
    assert body["errors"][field_name]  # a non-empty message list
    assert PASTED_SECRET.encode() not in response.content  # a pasted key is never echoed
    assert RESOURCES[path].model.objects.count() == 0  # type: ignore[attr-defined]


@pytest.mark.django_db
@prefix_params
def test_stdio_server_needs_a_superuser(
    make_user: Callable[..., User], token_client: Callable[[User | None], APIClient], prefix: str
) -> None:
    payload = {"name": "local", "protocol": "stdio", "command": "python3", "args": ["-m", "tool"]}
    engineer = token_client(make_user("engineer", *RESOURCES["mcp-servers"].all_perms()))

    refused = engineer.post(f"{prefix}mcp-servers/", payload, format="json")

    assert refused.status_code == 403  # a permission, not bad input (issue 9)
    assert error_of(refused).startswith("protocol:")
    assert "protocol" in refused.json()["errors"]
    assert not MCPServer.objects.exists()

    root = token_client(make_user("root", superuser=True))
    created = root.post(f"{prefix}mcp-servers/", payload, format="json")

    assert created.status_code == 201, created.content
    stored = MCPServer.objects.get(pk=created.json()["id"])
    assert (stored.protocol, stored.command, stored.args) == ("stdio", "python3", ["-m", "tool"])


@pytest.mark.django_db
def test_non_superuser_may_neither_describe_nor_reprogram_a_stdio_server(
    make_user: Callable[..., User], token_client: Callable[[User | None], APIClient]
) -> None:
    # Any change to a stdio server is for superusers (issue 9); describing it used to be allowed.
    server = make_mcp("local", protocol="stdio", url="", command="python3", args=["-m", "tool"])
    engineer = token_client(make_user("engineer", *RESOURCES["mcp-servers"].all_perms()))

    reprogram = engineer.patch(f"/api/mcp-servers/{server.pk}/", {"command": "/bin/sh"}, format="json")
    describe = engineer.patch(f"/api/mcp-servers/{server.pk}/", {"description": "local tools"}, format="json")

    assert reprogram.status_code == 403
    assert "protocol" in reprogram.json()["errors"]
    assert describe.status_code == 403
    server.refresh_from_db()
    assert (server.command, server.description) == ("python3", "")


# --- the one-default rule ------------------------------------------------------------------


def default_names() -> list[str]:
    return list(LLMModel.objects.filter(is_default=True).values_list("name", flat=True))


def _llm(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "provider": "openai", "model": name, **extra}


@pytest.mark.django_db
@prefix_params
def test_first_model_becomes_default_even_if_not_asked(admin_api: APIClient, prefix: str) -> None:
    response = admin_api.post(f"{prefix}llm-models/", _llm("first", is_default=False), format="json")

    assert response.status_code == 201
    assert response.json()["is_default"] is True
    assert default_names() == ["first"]


@pytest.mark.django_db
@prefix_params
def test_creating_a_new_default_unsets_the_previous_one(admin_api: APIClient, prefix: str) -> None:
    admin_api.post(f"{prefix}llm-models/", _llm("first"), format="json")

    response = admin_api.post(f"{prefix}llm-models/", _llm("second", is_default=True), format="json")

    assert response.status_code == 201, response.content
    assert response.json()["is_default"] is True
    assert default_names() == ["second"]
    assert LLMModel.objects.get(name="first").is_default is False


@pytest.mark.django_db
@prefix_params
def test_patch_makes_another_model_the_default(admin_api: APIClient, prefix: str) -> None:
    make_llm("first")
    second = make_llm("second")

    response = admin_api.patch(f"{prefix}llm-models/{second.pk}/", {"is_default": True}, format="json")

    assert response.status_code == 200, response.content
    assert response.json()["is_default"] is True
    assert default_names() == ["second"]


@pytest.mark.django_db
@prefix_params
def test_the_default_cannot_be_unset_directly(admin_api: APIClient, prefix: str) -> None:
    first = make_llm("first")
    make_llm("second")

    response = admin_api.patch(f"{prefix}llm-models/{first.pk}/", {"is_default": False}, format="json")

    assert response.status_code == 400
    assert error_of(response).startswith("is_default:")
    assert "is_default" in response.json()["errors"]
    assert default_names() == ["first"]


@pytest.mark.django_db
@prefix_params
def test_deleting_the_default_promotes_the_most_recently_updated_model(
    admin_api: APIClient, prefix: str
) -> None:
    first = make_llm("first")
    second = make_llm("second")
    make_llm("third")
    second.description = "touched last"
    second.save()  # now the most recently updated of the others

    response = admin_api.delete(f"{prefix}llm-models/{first.pk}/")

    assert response.status_code == 204
    assert default_names() == ["second"]


@pytest.mark.django_db
def test_exactly_one_default_after_every_step(admin_api: APIClient) -> None:
    base = "/api/llm-models/"

    def step(response: Any, status: int, default: str | None) -> dict[str, Any]:
        assert response.status_code == status, response.content
        assert LLMModel.objects.filter(is_default=True).count() == (1 if LLMModel.objects.exists() else 0)
        assert default_names() == ([default] if default else [])
        return response.json() if response.content else {}

    a = step(admin_api.post(base, _llm("a"), format="json"), 201, "a")
    b = step(admin_api.post(base, _llm("b"), format="json"), 201, "a")
    c = step(admin_api.post(base, _llm("c", is_default=True), format="json"), 201, "c")
    step(admin_api.patch(f"{base}{b['id']}/", {"is_default": True}, format="json"), 200, "b")
    step(admin_api.patch(f"{base}{b['id']}/", {"is_default": False}, format="json"), 400, "b")
    step(admin_api.patch(f"{base}{a['id']}/", {"description": "still not default"}, format="json"), 200, "b")
    step(admin_api.delete(f"{base}{b['id']}/"), 204, "a")  # a was updated last
    step(admin_api.delete(f"{base}{a['id']}/"), 204, "c")
    step(admin_api.delete(f"{base}{c['id']}/"), 204, None)


@pytest.mark.django_db(transaction=True)
def test_concurrent_default_changes_leave_exactly_one_default(require_postgres: None) -> None:
    models = [make_llm(f"model-{i}") for i in range(8)]
    barrier = threading.Barrier(len(models))
    lock = threading.Lock()
    winners: list[str] = []
    conflicts: list[ConflictError] = []
    failures: list[BaseException] = []

    def make_default(pk: Any) -> None:
        try:
            model = LLMModel.objects.get(pk=pk)
            model.is_default = True
            barrier.wait(timeout=30)
            services.llm_model_save(model=model)
            with lock:
                winners.append(model.name)
        except ConflictError as exc:
            with lock:
                conflicts.append(exc)
        except BaseException as exc:
            with lock:
                failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=make_default, args=(m.pk,)) for m in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert not any(t.is_alive() for t in threads)
    assert failures == [], [f"{type(e).__name__}: {e}" for e in failures]
    assert len(conflicts) <= 3, [str(c) for c in conflicts]
    assert len(winners) + len(conflicts) == len(models)
    assert LLMModel.objects.filter(is_default=True).count() == 1
    assert default_names()[0] in winners  # the default is one a caller was told it set


# --- health check over the API -------------------------------------------------------------


@pytest.mark.django_db
@prefix_params
def test_health_check_needs_the_change_permission(
    make_user: Callable[..., User], token_client: Callable[[User | None], APIClient], prefix: str
) -> None:
    server = make_mcp("down", connect_timeout=5)
    url = f"{prefix}mcp-servers/{server.pk}/health-check/"
    adder = token_client(make_user("adder", "registry.view_mcpserver", "registry.add_mcpserver"))

    refused = adder.post(url)

    assert refused.status_code == 403
    assert "permission" in error_of(refused)
    server.refresh_from_db()
    assert server.last_checked_at is None and server.status == ServerStatus.UNKNOWN

    changer = token_client(make_user("changer", "registry.change_mcpserver"))
    response = changer.post(url)

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ok"] is False and body["status"] == "unhealthy" and body["changed"] is True
    assert "127.0.0.1:9" in body["error"]
    assert body["server"]["status"] == {"value": "unhealthy", "name": "Unhealthy"}
    server.refresh_from_db()
    assert server.status == ServerStatus.UNHEALTHY and server.last_checked_at is not None
    assert "127.0.0.1:9" in server.last_error


@pytest.mark.django_db
def test_health_check_of_a_disabled_server_is_refused_not_a_crash(admin_api: APIClient) -> None:
    server = make_mcp("off", enabled=False, status=ServerStatus.DISABLED)

    response = admin_api.post(f"/api/mcp-servers/{server.pk}/health-check/")

    assert response.status_code == 409, response.content
    assert "disabled" in error_of(response)
    server.refresh_from_db()
    assert server.status == ServerStatus.DISABLED and server.last_checked_at is None


@pytest.mark.django_db
@prefix_params
def test_tools_lists_the_cached_tools(admin_api: APIClient, prefix: str) -> None:
    tool = {
        "name": "t1",
        "title": None,
        "description": "d",
        "input_schema": {"type": "object", "properties": {"x": {"type": "integer"}}},
        "annotations": {"readOnlyHint": True},
    }
    server = make_mcp("cached", status=ServerStatus.HEALTHY)
    server_tools_sync(server=server, tools=[tool])

    response = admin_api.get(f"{prefix}mcp-servers/{server.pk}/tools/")

    assert response.status_code == 200
    # Issue 11: each tool comes with its public name and review state besides its definition.
    [listed] = response.json()
    assert {k: listed[k] for k in tool} == tool
    assert listed["public_name"] == "t1" and listed["review"] == "active" and listed["enabled"] is True
    detail = admin_api.get(f"{prefix}mcp-servers/{server.pk}/").json()
    assert detail["tool_count"] == 1 and detail["tool_names"] == ["t1"]


# --- secrets never returned or logged -------------------------------------------------------


@pytest.fixture
def all_logs_at_debug(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Capture every logger at DEBUG, including the ones settings quiet down (httpx, mcp, ...)."""
    caplog.set_level(logging.DEBUG)
    for name in [
        *logging.root.manager.loggerDict,
        "httpcore",
        "httpx",
        "httpx2",
        "mcp",
        "registry",
        "netops",
    ]:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def assert_secret_absent(bodies: list[bytes], caplog: pytest.LogCaptureFixture) -> None:
    for body in bodies:
        assert SECRET.encode() not in body
    assert SECRET not in caplog.text
    for record in caplog.records:  # extra fields too: the JSON handler writes them out
        assert SECRET not in str(vars(record)), record.getMessage()


class _RecordingHandler(BaseHTTPRequestHandler):
    """A tool server on loopback that records request headers and echoes the credential in its errors."""

    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers))
        if self.path == "/health":
            status, body = 200, b"ok"
        else:  # the tool list is refused, quoting the credential as some servers do
            status, body = 401, f"invalid credentials: {self.headers.get('Authorization')}".encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recording_server() -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    handler = type("Handler", (_RecordingHandler,), {"seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.mark.django_db
@prefix_params
def test_secret_is_never_returned_or_logged_by_a_failing_health_check(
    admin_api: APIClient,
    monkeypatch: pytest.MonkeyPatch,
    all_logs_at_debug: pytest.LogCaptureFixture,
    prefix: str,
) -> None:
    monkeypatch.setenv("NETOPS_TEST_SECRET", SECRET)
    base = f"{prefix}mcp-servers/"
    created = admin_api.post(
        base,
        {
            "name": "secret-holder",
            "protocol": "http",
            "url": CLOSED_PORT_URL,
            "auth_secret_ref": "env:NETOPS_TEST_SECRET",
            "connect_timeout": 5,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    pk = created.json()["id"]

    check = admin_api.post(f"{base}{pk}/health-check/")
    listed = admin_api.get(base)
    detail = admin_api.get(f"{base}{pk}/")

    assert check.status_code == 200 and check.json()["status"] == "unhealthy"
    assert "127.0.0.1:9" in check.json()["error"]
    assert listed.status_code == 200 and detail.status_code == 200
    assert detail.json()["auth_secret_ref"] == "env:NETOPS_TEST_SECRET"
    assert detail.json()["last_error"] == check.json()["error"]
    assert any(r.getMessage() == "mcp server checked" for r in all_logs_at_debug.records)
    assert_secret_absent([created.content, check.content, listed.content, detail.content], all_logs_at_debug)


@pytest.mark.django_db
def test_secret_is_sent_to_the_server_but_never_returned_or_logged(
    admin_api: APIClient,
    monkeypatch: pytest.MonkeyPatch,
    all_logs_at_debug: pytest.LogCaptureFixture,
    recording_server: tuple[str, list[dict[str, str]]],
) -> None:
    """A REST tool server that quotes the credential in its error must not leak it through netops."""
    monkeypatch.setenv("NETOPS_TEST_SECRET", SECRET)
    url, seen = recording_server
    server = make_mcp(
        "echoing",
        protocol="rest",
        url=f"{url}/api/mcp",
        health_check="/health",  # probed too: the secret goes with both requests
        auth_secret_ref="env:NETOPS_TEST_SECRET",
    )

    check = admin_api.post(f"/api/mcp-servers/{server.pk}/health-check/")
    listed = admin_api.get("/api/mcp-servers/")
    detail = admin_api.get(f"/api/mcp-servers/{server.pk}/")

    assert [h.get("Authorization") for h in seen] == [f"Bearer {SECRET}"] * 2  # health, then tools
    assert check.status_code == 200 and check.json()["ok"] is False
    assert "401" in check.json()["error"]
    server.refresh_from_db()
    assert SECRET not in server.last_error
    assert_secret_absent([check.content, listed.content, detail.content], all_logs_at_debug)


def _console_handler() -> logging.Handler:
    for handler in logging.getLogger().handlers:
        if handler.get_name() == "console":
            return handler
    raise AssertionError("the LOGGING setting configures no 'console' handler on the root logger")


@pytest.fixture
def console_copy(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[logging.Logger, StringIO]]:
    """A logger writing through a copy of the configured console handler (same filters, same format)."""
    monkeypatch.setenv("NETOPS_TEST_SECRET", SECRET)
    console = _console_handler()
    assert any(isinstance(f, RedactSecretsFilter) for f in console.filters)
    stream = StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(console.formatter)
    for log_filter in console.filters:
        handler.addFilter(log_filter)
    logger = logging.getLogger("tests.registry.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def _lines(stream: StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_console_handler_redacts_a_resolved_secret_in_the_message(
    console_copy: tuple[logging.Logger, StringIO],
) -> None:
    logger, stream = console_copy
    secret = resolve_secret("env:NETOPS_TEST_SECRET")
    assert secret == SECRET

    logger.error(f"boom {secret}")
    logger.error("boom again %s", secret)

    assert SECRET not in stream.getvalue()
    assert [line["message"] for line in _lines(stream)] == ["boom [redacted]", "boom again [redacted]"]


def test_console_handler_redacts_a_resolved_secret_in_exception_text(
    console_copy: tuple[logging.Logger, StringIO],
) -> None:
    logger, stream = console_copy
    secret = resolve_secret("env:NETOPS_TEST_SECRET")

    try:
        raise RuntimeError(f"upstream rejected header Bearer {secret}")
    except RuntimeError:
        logger.exception("call failed")

    assert SECRET not in stream.getvalue()
    assert "Bearer [redacted]" in stream.getvalue()
    assert _lines(stream)[0]["message"] == "call failed"


def test_console_handler_redacts_a_resolved_secret_in_extra_fields(
    console_copy: tuple[logging.Logger, StringIO],
) -> None:
    """Services log failures as ``extra={"error": ...}``; the JSON formatter writes extras out."""
    logger, stream = console_copy
    secret = resolve_secret("env:NETOPS_TEST_SECRET")

    logger.warning("mcp server checked", extra={"error": f"GET /tools answered 401: Bearer {secret}"})

    assert SECRET not in stream.getvalue()
    assert _lines(stream)[0]["error"] == "GET /tools answered 401: Bearer [redacted]"


def test_redact_filter_leaves_unrelated_records_alone() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "nothing %s here", ("secret-free",), None)

    assert RedactSecretsFilter().filter(record) is True
    assert record.getMessage() == "nothing secret-free here"


# --- OpenAPI schema and docs -----------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("query", "headers"),
    [
        pytest.param("?format=json", {}, id="format-param"),
        pytest.param("", {"HTTP_ACCEPT": "application/vnd.oai.openapi+json"}, id="accept-header"),
    ],
)
def test_schema_documents_the_canonical_paths_only(
    admin_api: APIClient, query: str, headers: dict[str, str]
) -> None:
    response = admin_api.get(f"/api/schema/{query}", **headers)

    assert response.status_code == 200
    document = json.loads(response.content)
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"] == "netops API"
    paths = document["paths"]
    assert {"get", "post"} <= set(paths["/api/llm-models/"])
    assert {"get", "patch", "delete"} <= set(paths["/api/llm-models/{id}/"])
    assert "post" in paths["/api/mcp-servers/{id}/health-check/"]
    assert not [p for p in paths if p.startswith("/api/plugins/")]
    assert b"/api/plugins/" not in response.content


@pytest.mark.django_db
def test_schema_needs_authentication(token_client: Callable[[User | None], APIClient]) -> None:
    response = token_client(None).get("/api/schema/?format=json")

    assert response.status_code == 401
    assert b"/api/llm-models/" not in response.content


@pytest.mark.django_db
def test_api_docs_render_for_a_logged_in_user(make_user: Callable[..., User]) -> None:
    client = Client()
    anonymous = client.get("/api/docs/")  # issue 9: the login page, not a blank or an error page
    assert anonymous.status_code == 302 and anonymous["Location"] == "/accounts/login/?next=/api/docs/"

    client.force_login(make_user("engineer"))
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert b"swagger-ui" in response.content.lower()
    # The split view: no inline script (CSP); the page's own script points Swagger UI at the schema.
    assert b'<script src="/api/docs/?script="></script>' in response.content
    assert b"/api/schema/" in client.get("/api/docs/?script=").content
