"""Secret references may name only what the operator allowed, and never netops' own configuration.

Issue 9, "Critical: a registry editor can read any secret and any file": before the policy a user
who could add an MCP server (or an LLM model) registered ``auth_secret_ref: env:SECRET_KEY`` or
``file:/etc/shadow``, ran a health check and received the value at a URL of their choosing. Each
test here registers such a reference over the real REST API (or stores one the old way, straight
in the database) and checks that it is refused when saved and again at use, naming the field and
the rule, never the value. Real HTTP servers on loopback stand in for the attacker's endpoint.
"""

from __future__ import annotations

import ast
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.checks import run_checks
from django.test import override_settings
from rest_framework.test import APIClient

import netops.settings as settings_module
from netops.secrets import SecretError, resolve_secret, validate_secret_reference
from registry.models import LLMModel, MCPServer

TOKEN_VALUE = "tok-3f9a1c7e5b2d4a6f8e0c"  # the value of an allowed reference (FOO_TOKEN)
FILE_SECRET = "file-secret-7d1e4b9a2c"  # content of an allowed secret file
OUTSIDE_SECRET = "outside-secret-5c8e2a1f"  # content of a file outside the allowed directories


class _Recorder(BaseHTTPRequestHandler):
    """A stand-in for the attacker's endpoint: it records every request's headers."""

    seen: list[dict[str, str]]

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers))
        body = b'{"tools": []}' if self.path.endswith("/tools") else b"ok"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def attacker() -> Iterator[tuple[str, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), type("Handler", (_Recorder,), {"seen": seen}))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def secret_dirs(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """An allowed secrets directory (with a secret and a link pointing out) and a file outside it."""
    allowed = tmp_path / "secrets"
    allowed.mkdir()
    (allowed / "api_token").write_text(FILE_SECRET + "\n")
    outside = tmp_path / "outside.txt"
    outside.write_text(OUTSIDE_SECRET)
    (allowed / "escape").symlink_to(outside)
    (allowed / "sub").mkdir()
    with override_settings(SECRET_FILE_DIRS=["/run/secrets", str(allowed)]):
        yield {"allowed": allowed, "outside": outside}


def _values_that_must_not_leak() -> list[str]:
    values = [settings.SECRET_KEY, OUTSIDE_SECRET, str(settings.DATABASES["default"]["NAME"])]
    passwd = Path("/etc/passwd")
    if passwd.is_file():
        values.append(passwd.read_text().splitlines()[0])  # root:x:0:0:...
    return values


REFUSED = [
    pytest.param("env:SECRET_KEY", "netops' own configuration", id="env-SECRET_KEY"),
    pytest.param("env:DATABASE_URL", "netops' own configuration", id="env-DATABASE_URL"),
    pytest.param("env:NETBOX_TOKEN", "netops' own configuration", id="env-NETBOX_TOKEN"),
    pytest.param("env:PATH", "SECRET_ENV_ALLOW", id="env-not-allowed"),
    pytest.param("file:/etc/shadow", "must point into one of", id="file-etc-shadow"),
    pytest.param("file:/proc/self/environ", "must point into one of", id="file-proc-environ"),
    pytest.param("file:/run/secrets/../../etc/passwd", "must point into one of", id="file-dotdot"),
    pytest.param("file:{allowed}/escape", "must point into one of", id="file-symlink-out"),
    pytest.param("file:{allowed}/../outside.txt", "must point into one of", id="file-dotdot-tmp"),
    pytest.param("file:{allowed}/sub", "not a regular file", id="file-directory"),
]

# (path, payload builder, field named in the error)
TARGETS = [
    pytest.param(
        "mcp-servers",
        lambda ref, url: {"name": "evil", "protocol": "rest", "url": url, "auth_secret_ref": ref},
        "auth_secret_ref",
        id="mcp-auth",
    ),
    pytest.param(
        "llm-models",
        lambda ref, url: {
            "name": "evil",
            "provider": "openai_compatible",
            "endpoint": url,
            "model": "m",
            "api_key_ref": ref,
        },
        "api_key_ref",
        id="llm-key",
    ),
    pytest.param(
        "mcp-servers",
        lambda ref, url: {"name": "evil", "protocol": "rest", "url": url, "env": {"API_TOKEN": ref}},
        "env",
        id="mcp-env",
    ),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "payload", "field"), TARGETS)
@pytest.mark.parametrize(("reference", "rule"), REFUSED)
def test_a_forbidden_reference_is_refused_naming_the_field_and_the_rule(
    admin_api: APIClient,
    secret_dirs: dict[str, Path],
    attacker: tuple[str, list[dict[str, str]]],
    path: str,
    payload: Any,
    field: str,
    reference: str,
    rule: str,
) -> None:
    url, seen = attacker
    reference = reference.format(allowed=secret_dirs["allowed"])

    response = admin_api.post(f"/api/{path}/", payload(reference, url), format="json")

    assert response.status_code == 400, response.content
    body = response.json()
    assert body["error"].startswith(f"{field}") and rule in body["error"], body
    assert field in body["errors"]
    for value in _values_that_must_not_leak():
        assert value not in response.content.decode()
    assert not MCPServer.objects.exists() and not LLMModel.objects.exists()
    assert seen == []


@pytest.mark.django_db
def test_an_allowed_env_reference_works_end_to_end(
    admin_api: APIClient, monkeypatch: pytest.MonkeyPatch, attacker: tuple[str, list[dict[str, str]]]
) -> None:
    monkeypatch.setenv("FOO_TOKEN", TOKEN_VALUE)
    url, seen = attacker

    created = admin_api.post(
        "/api/mcp-servers/",
        {"name": "ok", "protocol": "rest", "url": f"{url}/api/mcp", "auth_secret_ref": "env:FOO_TOKEN"},
        format="json",
    )
    assert created.status_code == 201, created.content
    check = admin_api.post(f"/api/mcp-servers/{created.json()['id']}/health-check/")

    assert check.status_code == 200 and check.json()["ok"] is True, check.content
    assert {h.get("Authorization") for h in seen} == {f"Bearer {TOKEN_VALUE}"}
    assert TOKEN_VALUE not in created.content.decode() + check.content.decode()


@pytest.mark.django_db
def test_an_allowed_file_reference_resolves(secret_dirs: dict[str, Path]) -> None:
    reference = f"file:{secret_dirs['allowed']}/api_token"

    assert validate_secret_reference(reference) == reference
    assert resolve_secret(reference) == FILE_SECRET


@pytest.mark.django_db
def test_a_file_not_yet_created_inside_an_allowed_directory_may_be_saved(
    secret_dirs: dict[str, Path],
) -> None:
    reference = f"file:{secret_dirs['allowed']}/later"
    assert validate_secret_reference(reference) == reference
    with pytest.raises(SecretError, match="does not exist"):
        resolve_secret(reference)


@override_settings(SECRET_ENV_ALLOW=["*"])
def test_allow_everything_still_refuses_netops_own_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SECRET_KEY", "a-secret-key-from-the-environment")
    monkeypatch.setenv("SOME_OTHER_VALUE", "fine")

    for name in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "METRICS_TOKEN", "NETBOX_TOKEN", "NETBOX_URL"):
        with pytest.raises(SecretError, match="netops' own configuration"):
            validate_secret_reference(f"env:{name}")
        with pytest.raises(SecretError, match="netops' own configuration"):
            resolve_secret(f"env:{name}")
    assert resolve_secret("env:SOME_OTHER_VALUE") == "fine"


def _env_names_read_in_settings() -> set[str]:
    """Every NAME of an ``env("NAME")`` / ``env.<cast>("NAME", ...)`` call in netops/settings.py."""
    tree = ast.parse(Path(settings_module.__file__).read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        is_env = (isinstance(func, ast.Name) and func.id == "env") or (
            isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "env"
        )
        first = node.args[0]
        if is_env and isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.add(first.value)
    return names


@override_settings(SECRET_ENV_ALLOW=["*"])
def test_every_variable_the_settings_read_is_refused_as_a_reference() -> None:
    names = _env_names_read_in_settings()
    assert {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "NETBOX_TOKEN", "METRICS_TOKEN"} <= names

    assert names <= set(settings.NETOPS_OWN_ENV_VARS), names - set(settings.NETOPS_OWN_ENV_VARS)
    for name in sorted(names):
        with pytest.raises(SecretError, match="netops' own configuration"):
            validate_secret_reference(f"env:{name}")


@pytest.mark.django_db
def test_netops_own_files_are_refused_even_inside_an_allowed_directory() -> None:
    var_dir = Path(settings.VAR_DIR)
    (var_dir / "secret_key").touch(exist_ok=True)
    with override_settings(SECRET_FILE_DIRS=[str(var_dir)]):
        with pytest.raises(SecretError, match="netops' own configuration"):
            validate_secret_reference(f"file:{var_dir}/secret_key")
        with pytest.raises(SecretError, match="netops' own configuration"):
            resolve_secret(f"file:{var_dir}/secret_key")


STORED_BAD = [
    pytest.param("env:SECRET_KEY", "netops' own configuration", id="env-SECRET_KEY"),
    pytest.param("file:/etc/passwd", "must point into one of", id="file-etc-passwd"),
    pytest.param("file:/proc/self/environ", "must point into one of", id="file-proc-environ"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("reference", "rule"), STORED_BAD)
def test_a_reference_stored_before_the_policy_is_refused_at_use(
    admin_api: APIClient, attacker: tuple[str, list[dict[str, str]]], reference: str, rule: str
) -> None:
    url, seen = attacker
    # Written the old way: no validation (a row from before the policy).
    server = MCPServer.objects.create(
        name="old", protocol="rest", url=f"{url}/api/mcp", health_check="", auth_secret_ref=reference
    )
    model = LLMModel.objects.create(name="old", provider="openai", model="m", api_key_ref=reference)

    check = admin_api.post(f"/api/mcp-servers/{server.pk}/health-check/")

    assert check.status_code == 200 and check.json()["ok"] is False
    assert reference in check.json()["error"] and rule in check.json()["error"]
    assert seen == []  # nothing was sent
    for value in _values_that_must_not_leak():
        assert value not in check.content.decode()
    with pytest.raises(SecretError, match=rule):
        resolve_secret(model.api_key_ref)
    warnings = [m for m in run_checks() if m.id == "registry.W001"]
    assert {"auth_secret_ref", "api_key_ref"} <= {m.msg.split(": ")[1] for m in warnings}
    assert all(reference in m.msg for m in warnings)


@pytest.mark.django_db
def test_a_symlink_swapped_after_the_save_is_refused_at_use(
    admin_api: APIClient, secret_dirs: dict[str, Path], attacker: tuple[str, list[dict[str, str]]]
) -> None:
    url, seen = attacker
    target = secret_dirs["allowed"] / "swapped"
    target.write_text("harmless")
    created = admin_api.post(
        "/api/mcp-servers/",
        {"name": "swap", "protocol": "rest", "url": url, "auth_secret_ref": f"file:{target}"},
        format="json",
    )
    assert created.status_code == 201, created.content
    target.unlink()
    target.symlink_to(secret_dirs["outside"])

    check = admin_api.post(f"/api/mcp-servers/{created.json()['id']}/health-check/")

    assert check.json()["ok"] is False and "must point into one of" in check.json()["error"]
    assert seen == []
    assert OUTSIDE_SECRET not in check.content.decode()


STDIO_ENV_REFUSED = [
    pytest.param({"TOKEN": "raw-token-9e1f3a"}, "env.TOKEN", "looks like a secret", id="raw-TOKEN"),
    pytest.param({"DB_PASSWORD": "raw-pw-2b7c"}, "env.DB_PASSWORD", "looks like a secret", id="raw-PASSWORD"),
    pytest.param({"api_key": "raw-key-4d8e"}, "env.api_key", "looks like a secret", id="raw-lowercase"),
    pytest.param({"DEBUG": "env:SECRET_KEY"}, "env.DEBUG", "netops' own configuration", id="ref-own"),
    pytest.param({"DEBUG": "file:relative"}, "env.DEBUG", "absolute path", id="ref-malformed"),
]


@pytest.mark.django_db
@pytest.mark.parametrize(("env", "field", "rule"), STDIO_ENV_REFUSED)
def test_a_stdio_env_value_is_a_reference_or_plainly_not_secret(
    admin_api: APIClient, env: dict[str, str], field: str, rule: str
) -> None:
    payload = {"name": "local", "protocol": "stdio", "command": "/usr/bin/true", "env": env}

    response = admin_api.post("/api/mcp-servers/", payload, format="json")

    assert response.status_code == 400, response.content
    assert response.json()["error"].startswith(f"{field}: ") and rule in response.json()["error"]
    for value in env.values():
        if not value.startswith(("env:", "file:")):
            assert value not in response.content.decode()
    assert not MCPServer.objects.exists()


@pytest.mark.django_db
def test_stdio_env_takes_references_and_plain_values(
    admin_api: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {"API_TOKEN": "env:FOO_TOKEN", "DEBUG": "1", "PYTHONPATH": os.getcwd()}
    payload = {"name": "local", "protocol": "stdio", "command": "/usr/bin/true", "env": env}

    response = admin_api.post("/api/mcp-servers/", payload, format="json")

    assert response.status_code == 201, response.content
    assert MCPServer.objects.get().env == env
    assert response.json()["env"] == env  # a superuser sees raw values
