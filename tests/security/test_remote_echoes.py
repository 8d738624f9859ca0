"""Remote parties echo secrets back; netops must never pass them on (issue 9, "High").

Hostile servers of our own on loopback echo the credential netops sent them, in every form a real
server might: plain, base64 (standard, urlsafe, inside a longer blob at any alignment), URL-encoded,
hex, padded so that the secret starts after the 200th character, in structured content, in a raised
tool error, in a 401 health page, in an LLM's 400 error and in its streamed answer split across
chunks. The tests look for the secrets — with a detector of their own that decodes every base64
and hex run and every URL escape, not with the redactor's list of forms — in every HTTP response
body, every database row and every log record.

Secrets come from the environment (``env:HOSTILE_*_TOKEN`` / ``_KEY``, names the default
``SECRET_ENV_ALLOW`` permits), random per test run.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

import httpx
import httpx2
import pytest
from asgiref.sync import sync_to_async
from django.apps import apps
from django.contrib.auth.models import User
from django.test import AsyncClient
from django.test import Client as PageClient
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from pythonjsonlogger.json import JsonFormatter
from rest_framework.authtoken.models import Token

from chat.llm import LLMSettings, describe_llm_error, make_client
from chat.models import Conversation
from netops.redaction import REDACTED, Redactor, sanitize
from registry.health import ProbeResult
from registry.keys import api_key_create
from registry.mcp_endpoint import MCPEndpoint, transport_security
from registry.models import LLMModel, MCPServer
from registry.services import llm_model_save, mcp_server_record_check, mcp_servers_check_health
from tests.support.daphne import daphne, manage, standalone_env
from tests.support.hostile_servers import MCP_ECHO_TOOLS, REST_ECHO_TOOLS, hostile_server
from tests.support.scripted_llm import ScriptedLLM, ToolCallSpec, Turn

pytestmark = pytest.mark.django_db(transaction=True)

ENV_NAMES = ("HOSTILE_MCP_TOKEN", "HOSTILE_REST_TOKEN", "HOSTILE_HEALTH_TOKEN", "HOSTILE_LLM_KEY")


# --- an independent detector ----------------------------------------------------------------------

_B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{8,}")
_HEX_RUN = re.compile(r"[0-9a-fA-F]{12,}")


def _decoded_runs(text: str) -> Iterator[bytes]:
    """Every base64 run decoded at each of its four character offsets, and every hex run."""
    for run in _B64_RUN.findall(text):
        standard = run.replace("-", "+").replace("_", "/")
        for offset in range(4):
            chunk = standard[offset:]
            if len(chunk) % 4 == 1:
                chunk = chunk[:-1]
            chunk += "=" * (-len(chunk) % 4)
            try:
                yield base64.b64decode(chunk)
            except (binascii.Error, ValueError):
                continue
    for run in _HEX_RUN.findall(text):
        for offset in (0, 1):
            chunk = run[offset:]
            yield bytes.fromhex(chunk[: len(chunk) // 2 * 2])


def found_forms(text: str, secret: str) -> list[str]:
    """How ``secret`` (or a 10-character piece of it) appears in ``text``: [] when it does not."""
    found = []
    if secret in text:
        found.append("plain")
    elif any(secret[i : i + 10] in text for i in range(len(secret) - 9)):
        found.append("a part")
    if ("%" in text or "+" in text) and (secret in unquote(text) or secret in unquote_plus(text)):
        found.append("url-encoded")
    raw = secret.encode()
    if any(raw in decoded for decoded in _decoded_runs(text)):
        found.append("base64 or hex")
    return found


@dataclass
class Leaks:
    """What was tried, and every place a secret was found."""

    secrets: dict[str, str]
    tried: int = 0
    checked: int = 0
    found: list[str] = field(default_factory=list)

    def check(self, where: str, text: str | bytes) -> None:
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        self.checked += 1
        for name, secret in self.secrets.items():
            forms = found_forms(text, secret)
            if forms:
                self.found.append(f"{name} as {'/'.join(forms)} in {where}")

    def report(self, title: str) -> str:
        return (
            f"{title}: hostile echoes tried {self.tried}, texts checked {self.checked}, "
            f"secrets found {len(self.found)}"
        )


@pytest.fixture
def hostile_secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {name: f"hx-{secrets.token_urlsafe(24)}" for name in ENV_NAMES}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def test_the_detector_finds_what_it_must() -> None:
    """The detector itself, so that "0 found" means something."""
    secret = "hx-" + secrets.token_urlsafe(24)
    header = f"Bearer {secret}"
    for text in (
        f"token rejected: {header}",
        base64.b64encode(f"x{header}".encode()).decode(),
        base64.urlsafe_b64encode(f"xy{header}".encode()).decode().rstrip("="),
        quote(header, safe=""),
        header.encode().hex().upper(),
        "x" * 250 + secret[:12],
    ):
        assert found_forms(text, secret), text
    assert found_forms(f"token rejected: Bearer {REDACTED}", secret) == []


# --- the redactor itself ----------------------------------------------------------------------------


def test_the_redactor_masks_every_form_at_any_alignment_and_is_fast() -> None:
    secret = "hx-" + secrets.token_urlsafe(30)
    redactor = Redactor([secret, "short"])  # < 6 characters: not tracked
    samples = [
        f"{prefix}{secret}{suffix}" for prefix in ("", "a", "ab", "Bearer ") for suffix in ("", "!", "?#")
    ]
    encoded = [base64.b64encode(s.encode()).decode() for s in samples]
    encoded += [base64.urlsafe_b64encode(s.encode()).decode().rstrip("=") for s in samples]
    encoded += [
        quote(secret, safe=""),
        secret.encode().hex(),
        secret.encode().hex().upper(),
        repr(secret.encode()),
    ]
    for text in samples + encoded:
        assert found_forms(redactor.redact(f"echo: {text} end"), secret) == [], text
    assert redactor.redact("a short word") == "a short word"

    # A secret split anywhere across stream pieces never comes out, and nothing else is lost.
    text = f"The key is {secret} and again {base64.b64encode(secret.encode()).decode()} done."
    for size in (1, 2, 3, 5, 7, 64):
        stream = redactor.stream()
        pieces = [text[i : i + size] for i in range(0, len(text), size)]
        released = [stream.feed(piece) for piece in pieces] + [stream.flush()]
        assert "".join(released) == redactor.redact(text)
        assert found_forms("".join(released), secret) == []
    # Ordinary text is released at once (no secret can start in it): streaming is not delayed.
    stream = redactor.stream()
    assert stream.feed("Interface et-0/0/1 is up. ") == "Interface et-0/0/1 is up. "

    # Redaction comes before the cut: a secret straddling the limit is masked whole.
    cut = sanitize("y" * 195 + secret + "z" * 1000, secrets=[secret], limit=200)
    assert found_forms(cut, secret) == []
    assert "… [truncated: " in cut and cut.startswith("y" * 195 + REDACTED)

    # Speed: 1 MB of text against 50 secrets (steady state: the process redactor is compiled once).
    many = ["hx-" + secrets.token_urlsafe(32) for _ in range(50)]
    big = Redactor(many)
    corpus = (json.dumps({"interfaces": [{"name": f"et-0/0/{i}", "status": "up"} for i in range(20)]}) * 800)[
        :1_000_000
    ]
    corpus = corpus[:500_000] + many[7] + corpus[500_000:]
    big.redact(corpus)
    started = time.perf_counter()
    result = big.redact(corpus)
    megabyte_ms = (time.perf_counter() - started) * 1000
    assert many[7] not in result
    stream = big.stream()
    tokens = [corpus[i : i + 4] for i in range(0, 200_000, 4)]
    started = time.perf_counter()
    for token in tokens:
        stream.feed(token)
    per_token_ms = (time.perf_counter() - started) * 1000 / len(tokens)
    print(
        f"\nredaction: 1 MB x 50 secrets {megabyte_ms:.1f} ms; stream {per_token_ms * 1000:.1f} us per token"
    )
    assert megabyte_ms < 50
    assert per_token_ms < 0.1


# --- health errors ------------------------------------------------------------------------------


def test_health_errors_are_redacted_before_the_cut_with_the_servers_own_secrets(
    hostile_secrets: dict[str, str], admin_api: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A 401 page padded so the token starts after character 200, from an MCP and a REST server.

    Also a secret this process never resolved before (another process may have): the server's own
    reference is resolved when its error is recorded.
    """
    caplog.set_level(logging.INFO)
    leaks = Leaks(hostile_secrets)
    with (
        hostile_server("mcp", hostile_health=True) as mcp,
        hostile_server("rest", hostile_health=True) as rest,
    ):
        servers = [
            MCPServer.objects.create(
                name="hostile-health-mcp",
                protocol="http",
                url=mcp.base_url + "/mcp",
                health_check="/health",
                auth_secret_ref="env:HOSTILE_HEALTH_TOKEN",
            ),
            MCPServer.objects.create(
                name="hostile-health-rest",
                protocol="rest",
                url=rest.base_url,
                health_check="/health",
                auth_secret_ref="env:HOSTILE_HEALTH_TOKEN",
            ),
        ]
        for server in servers:
            response = admin_api.post(f"/api/mcp-servers/{server.pk}/health-check/")
            leaks.tried += 1
            assert response.status_code == 200, response.content
            assert response.json()["ok"] is False
            leaks.check(f"health-check response of {server.name}", response.content)
            leaks.check(f"detail of {server.name}", admin_api.get(f"/api/mcp-servers/{server.pk}/").content)
        leaks.check("server list", admin_api.get("/api/mcp-servers/").content)
        stored = [MCPServer.objects.get(pk=s.pk).last_error for s in servers]
        assert all(" unauthorized: Bearer [redacted]… [truncated: " in error for error in stored), stored

    never_resolved = "hx-" + secrets.token_urlsafe(24)
    leaks.secrets["HOSTILE_NEVER_RESOLVED_TOKEN"] = never_resolved
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOSTILE_NEVER_RESOLVED_TOKEN", never_resolved)
        other = MCPServer.objects.create(
            name="resolved-elsewhere",
            protocol="http",
            url="http://127.0.0.1:9/mcp",
            auth_secret_ref="env:HOSTILE_NEVER_RESOLVED_TOKEN",
        )
        echo = "x" * 250 + base64.b64encode(f"Bearer {never_resolved}".encode()).decode()
        outcome = mcp_server_record_check(
            server=other, result=ProbeResult(ok=False, duration_ms=1, error=echo)
        )
        leaks.tried += 1
        leaks.check("recorded outcome", outcome.error)
        leaks.check("stored last_error", MCPServer.objects.get(pk=other.pk).last_error)
    for record in caplog.records:
        leaks.check(f"log {record.name}", JsonFormatter().format(record))
    print("\n" + leaks.report("health errors"))
    assert leaks.found == []


# --- transport errors ------------------------------------------------------------------------------


def test_transport_errors_never_quote_header_values(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A secret with a line break (a file such as /etc/shadow) used to come back as
    ``Illegal header value b'Bearer root:...'``; now the request is refused before sending."""
    caplog.set_level(logging.INFO)
    secret = "root:$6$" + secrets.token_urlsafe(20) + "\ndaemon:*:19000"
    monkeypatch.setenv("HOSTILE_MULTILINE_TOKEN", secret)
    with hostile_server("mcp") as mcp, hostile_server("rest") as rest:
        servers = [
            MCPServer.objects.create(
                name=f"multiline-{protocol}",
                protocol=protocol,
                url=url,
                health_check="/health",
                auth_secret_ref="env:HOSTILE_MULTILINE_TOKEN",
            )
            for protocol, url in (("http", mcp.base_url + "/mcp"), ("rest", rest.base_url))
        ]
        outcomes = mcp_servers_check_health(servers=servers)
    for outcome in outcomes:
        assert outcome.ok is False
        assert "invalid header value in Authorization" in outcome.error, outcome.error
        for piece in secret.split("\n"):
            assert piece[:10] not in outcome.error
    settings = LLMSettings(
        name="m", provider="openai_compatible", model="x", endpoint="http://127.0.0.1:9/v1", api_key=secret
    )
    try:
        make_client(settings)
    except Exception as exc:
        text = describe_llm_error(exc, settings)
    else:  # pragma: no cover
        pytest.fail("a key with a line break was accepted")
    assert "cannot be sent" in text and secret.split("\n")[0][:10] not in text
    for record in caplog.records:
        assert secret.split("\n")[0][:10] not in JsonFormatter().format(record)


# --- the whole path: every face, every page, every row, every log line ----------------------------------


async def _mcp_results(key: str, names: list[str]) -> list[str]:
    app = MCPEndpoint(transport_security(["testserver"], []))
    http = httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), headers={"Authorization": f"Bearer {key}"}, timeout=120
    )
    texts = []
    async with http, Client(streamable_http_client("http://testserver/mcp", http_client=http)) as client:
        for name in names:
            result = await client.call_tool(name, {})
            texts.append(result.model_dump_json())
    return texts


def _dump_database() -> list[tuple[str, str]]:
    rows = []
    for model in apps.get_models():
        for obj in model._default_manager.all():
            values = {f.attname: getattr(obj, f.attname) for f in model._meta.concrete_fields}
            rows.append((model._meta.label, json.dumps(values, default=str, ensure_ascii=False)))
    return rows


def test_hostile_echoes_never_leave_netops(
    hostile_secrets: dict[str, str], caplog: pytest.LogCaptureFixture, admin_user: User
) -> None:
    caplog.set_level(logging.INFO)
    leaks = Leaks(hostile_secrets)
    token = Token.objects.create(user=admin_user).key
    _, api_key = api_key_create(owner=admin_user, name="hostile", level="read_only", rate_limit=100_000)
    with (
        hostile_server("mcp") as mcp,
        hostile_server("rest") as rest,
        ScriptedLLM(echo_key=True) as llm,
    ):
        servers = [
            MCPServer.objects.create(
                name="hostile-mcp",
                protocol="http",
                url=mcp.base_url + "/mcp",
                auth_secret_ref="env:HOSTILE_MCP_TOKEN",
            ),
            MCPServer.objects.create(
                name="hostile-rest",
                protocol="rest",
                url=rest.base_url,
                auth_secret_ref="env:HOSTILE_REST_TOKEN",
            ),
        ]
        assert all(o.ok for o in mcp_servers_check_health(servers=servers))
        llm_model_save(
            model=LLMModel(
                name="hostile-llm",
                provider="openai_compatible",
                endpoint=llm.base_url,
                model="gpt-hostile",
                api_key_ref="env:HOSTILE_LLM_KEY",
                request_timeout=60,
                is_default=True,
            )
        )
        names = [*MCP_ECHO_TOOLS, *REST_ECHO_TOOLS, "huge"]
        asyncio.run(_through_the_faces(leaks, llm, token, api_key, names))

    pages = PageClient()
    pages.force_login(admin_user)
    conversations = list(Conversation.objects.all())
    assert len(conversations) == 3
    for conversation in conversations:
        for path in (
            f"/chat/{conversation.pk}/",
            f"/chat/{conversation.pk}/export.json",
            f"/chat/{conversation.pk}/export.md",
            f"/api/conversations/{conversation.pk}/export/json/",
            f"/api/conversations/{conversation.pk}/export/md/",
            f"/api/conversations/{conversation.pk}/",
        ):
            response = pages.get(path)
            assert response.status_code == 200, path
            leaks.check(path, response.content)
    catalog = pages.get("/registry/catalog/")
    assert catalog.status_code == 200
    leaks.check("catalog page", catalog.content)
    for server in servers:
        leaks.check("server detail", pages.get(f"/api/mcp-servers/{server.pk}/").content)
    for label, row in _dump_database():
        leaks.check(f"row of {label}", row)
    for record in caplog.records:
        leaks.check(f"log record {record.name}", JsonFormatter().format(record))
        leaks.check(f"log message {record.name}", record.getMessage())
    print("\n" + leaks.report("remote echoes"))
    assert leaks.found == [], leaks.found[:20]
    assert leaks.tried >= 50


async def _through_the_faces(
    leaks: Leaks, llm: ScriptedLLM, token: str, api_key: str, names: list[str]
) -> None:
    client = AsyncClient()
    # 1. the REST tool gateway
    for name in names:
        response = await client.post(
            f"/api/mcp/tools/{name}",
            data="{}",
            content_type="application/json",
            headers={"Authorization": f"Bearer {api_key}"},
        )
        leaks.tried += 1
        # A tool's own error (echo_raise raises ToolError: isError) is the gateway's 422; a server
        # refusing the key (403) or failing (a 502 page) is 502 (README, the gateway's answers).
        expected = {"echo_raise": 422, "rest_echo_error": 502, "rest_echo_page": 502}.get(name, 200)
        assert response.status_code == expected, (name, response.status_code)
        assert len(response.content) < 1_000_000, (name, len(response.content))
        leaks.check(f"gateway {name}", response.content)
    # 2. /mcp through the SDK client
    for name, text in zip(names, await _mcp_results(api_key, names), strict=True):
        leaks.tried += 1
        assert len(text) < 1_000_000, name
        leaks.check(f"/mcp {name}", text)
    # 3. the chat API: tools called by the model, then an answer that echoes the key in four forms
    echoes = "The key is {key}; base64 {key_b64}; url {key_url}; hex {key_hex}. Done."
    llm.enqueue(
        Turn.tool_calls([ToolCallSpec(name, {}) for name in names]),
        Turn.text(echoes, chunk_size=3),
    )
    headers = {"Authorization": f"Token {token}"}
    response = await client.post(
        "/api/chat/",
        data=json.dumps({"message": "check everything"}),
        content_type="application/json",
        headers=headers,
    )
    leaks.tried += len(names) + 4
    body = response.json()
    assert response.status_code == 200, body
    assert len(body["tool_calls"]) == len(names)
    assert "The key is [redacted]" in body["response"]
    leaks.check("/api/chat/ JSON", response.content)
    # 4. over SSE: an LLM 400 quoting the key, then an answer streaming it split across chunks
    llm.enqueue(Turn.error(400, "Incorrect API key provided: {key} (b64 {key_b64})"))
    sse = await client.post(
        "/api/chat/",
        data=json.dumps({"message": "again"}),
        content_type="application/json",
        headers={**headers, "Accept": "text/event-stream"},
    )
    stream = b"".join([chunk async for chunk in sse.streaming_content])  # type: ignore[attr-defined]
    leaks.tried += 2
    assert b"event: done" in stream and b"HTTP 400" in stream, stream[-500:]
    leaks.check("/api/chat/ SSE with an LLM 400", stream)
    llm.enqueue(Turn.text(echoes, chunk_size=2))
    sse = await client.post(
        "/api/chat/",
        data=json.dumps({"message": "and stream"}),
        content_type="application/json",
        headers={**headers, "Accept": "text/event-stream"},
    )
    stream = b"".join([chunk async for chunk in sse.streaming_content])  # type: ignore[attr-defined]
    leaks.tried += 4
    assert stream.count(b"event: token") > 5  # still streamed in pieces, not held to the end
    leaks.check("/api/chat/ SSE answer", stream)
    received = {r.headers.get("authorization", "") for r in llm.requests}
    assert received == {f"Bearer {leaks.secrets['HOSTILE_LLM_KEY']}"}  # the echo is of the real key


# --- the result size cap ---------------------------------------------------------------------------


def test_a_20_mb_tool_result_is_capped_in_rows_responses_and_cards(
    hostile_secrets: dict[str, str], admin_user: User, settings: Any
) -> None:
    from chat.models import ToolCall

    _, api_key = api_key_create(owner=admin_user, name="big", level="read_only", rate_limit=100_000)
    with hostile_server("mcp") as mcp, ScriptedLLM() as llm:
        server = MCPServer.objects.create(
            name="hostile-mcp",
            protocol="http",
            url=mcp.base_url + "/mcp",
            auth_secret_ref="env:HOSTILE_MCP_TOKEN",
        )
        assert mcp_servers_check_health(servers=[server])[0].ok
        llm_model_save(
            model=LLMModel(
                name="big", provider="openai_compatible", endpoint=llm.base_url, model="m", is_default=True
            )
        )
        llm.enqueue(Turn.tool_calls([ToolCallSpec("huge", {})]), Turn.text("Seen."))

        async def scenario() -> tuple[Any, Any]:
            client = AsyncClient()
            gateway = await client.post(
                "/api/mcp/tools/huge",
                data="{}",
                content_type="application/json",
                headers={"Authorization": f"Bearer {api_key}"},
            )
            token = await sync_to_async(lambda: Token.objects.create(user=admin_user).key)()
            chat = await client.post(
                "/api/chat/",
                data=json.dumps({"message": "big"}),
                content_type="application/json",
                headers={"Authorization": f"Token {token}"},
            )
            return gateway, chat

        gateway, chat = asyncio.run(scenario())
        model_saw = llm.requests[1].body["messages"][-1]["content"]
    limit = settings.TOOL_RESULT_MAX_CHARS
    assert gateway.status_code == 200
    data = gateway.json()["data"]
    assert limit < len(data) < limit + 200
    assert data.endswith("[truncated: 20,000,000 characters, showing the first 200,000]")
    # The echo straddling the cut was masked before the cut.
    assert "token rejected: Bearer [redacted]… [truncated: " in data
    assert len(gateway.content) < 2 * limit
    assert chat.status_code == 200, chat.content[:300]
    row = ToolCall.objects.get()
    stored = json.dumps(row.content)
    assert len(stored) < limit + 1000 and row.structured_content is None
    assert len(model_saw) < 13_000  # the model's own, shorter cut stays
    pages = PageClient()
    pages.force_login(admin_user)
    page = pages.get(f"/chat/{row.message.conversation_id}/")
    assert b"truncated" in page.content
    assert len(page.content) < 3 * limit


# --- memory of a real daphne after a 20 MB result ---------------------------------------------------

_DAPHNE_SETUP = """
import os
from django.contrib.auth.models import User
from registry.keys import api_key_create
from registry.models import MCPServer
from registry.services import mcp_servers_check_health

owner = User.objects.create_superuser("root", "root@example.com", "pw-for-tests-1")
server = MCPServer.objects.create(
    name="hostile-mcp", protocol="http", url=os.environ["TEST_MCP_URL"], auth_secret_ref="env:HOSTILE_MCP_TOKEN"
)
assert mcp_servers_check_health(servers=[server])[0].ok
print("KEY", api_key_create(owner=owner, name="rss", level="read_only", rate_limit=100000)[1])
"""


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_daphne_does_not_keep_a_20_mb_result(tmp_path: Path, hostile_secrets: dict[str, str]) -> None:
    """Three 20 MB results through the gateway of a real daphne: bounded responses, and the memory
    daphne holds afterwards stays far below the hundreds of MB it kept before the cap."""
    env = standalone_env(tmp_path, HOSTILE_MCP_TOKEN=hostile_secrets["HOSTILE_MCP_TOKEN"])
    with hostile_server("mcp") as mcp:
        manage(env, "migrate", "--noinput")
        out = manage({**env, "TEST_MCP_URL": mcp.base_url + "/mcp"}, "shell", "-c", _DAPHNE_SETUP)
        key = out.split("KEY", 1)[1].split()[0]
        with daphne(env, log=tmp_path / "daphne.log") as running:
            headers = {"Authorization": f"Bearer {key}"}
            url = f"{running.base_url}/api/mcp/tools"
            with httpx.Client(timeout=120, headers=headers) as http:
                for _ in range(3):  # warm up: sessions, imports, caches
                    assert http.post(f"{url}/echo_plain", json={}).status_code == 200
                before = _rss_mb(running.process.pid)
                sizes = []
                for _ in range(3):
                    response = http.post(f"{url}/huge", json={})
                    assert response.status_code == 200
                    sizes.append(len(response.content))
                time.sleep(2)
                after = _rss_mb(running.process.pid)
    print(
        f"\ndaphne RSS before {before:.0f} MB, after three 20 MB results {after:.0f} MB "
        f"(+{after - before:.0f} MB); gateway responses {max(sizes):,} bytes"
    )
    assert max(sizes) < 400_000
    assert after - before < 150
