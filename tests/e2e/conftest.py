"""End-to-end fixtures: a real netops under daphne with its own SQLite state, and a real Chromium.

The netops process is a subprocess with a fresh ``NETOPS_VAR_DIR``; it never inherits the pytest
process's ``DATABASE_URL``/``REDIS_URL`` (CI sets them), so it runs on its embedded defaults: SQLite
in the var dir and the in-memory channel layer. Its user, LLM model and MCP server are created in
*that* database by ``manage.py`` subprocesses: the pytest process's own Django database is another one.

The LLM is the scripted double running inside the pytest process on loopback; the MCP server is the
demo server over Streamable HTTP. The browser is Debian's Chromium (never downloaded): without it
the tests are skipped locally and fail in CI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from tests.support.daphne import daphne
from tests.support.processes import ROOT, mcp_demo_server
from tests.support.scripted_llm import ScriptedLLM

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USERNAME = "engineer"
PASSWORD = "pw-for-e2e-tests-1"
MCP_SERVER_NAME = "lab"

# Variables of the pytest environment that must not reach the netops child: it has to run on its
# embedded defaults (SQLite in its own var dir, in-memory channel layer) and plain http cookies.
_CHILD_ENV_DROP = {
    "DATABASE_URL",
    "REDIS_URL",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "DJANGO_SETTINGS_MODULE",
}

# Runs inside ``manage.py shell`` of the child's database (values come through the environment).
_SETUP = """
import os
from django.contrib.auth.models import User
from django.db import connection
from registry.models import LLMModel, MCPServer
from registry.services import llm_model_save

User.objects.create_user(os.environ["E2E_USERNAME"], password=os.environ["E2E_PASSWORD"])
llm_model_save(
    model=LLMModel(
        name="scripted",
        provider="openai_compatible",
        endpoint=os.environ["E2E_LLM_URL"],
        model="gpt-scripted",
        request_timeout=20,
        is_default=True,
    )
)
MCPServer.objects.create(name=os.environ["E2E_MCP_NAME"], protocol="http", url=os.environ["E2E_MCP_URL"])
print("E2E-DATABASE", connection.vendor, connection.settings_dict["NAME"])
"""


@dataclass(frozen=True)
class RunningNetops:
    base_url: str
    username: str
    password: str
    var_dir: Path
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def _child_env(var_dir: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _CHILD_ENV_DROP}
    env.update(
        NETOPS_VAR_DIR=str(var_dir),
        DJANGO_SETTINGS_MODULE="netops.settings",
        ALLOWED_HOSTS="127.0.0.1,localhost",
    )
    return env


def _manage(env: dict[str, str], *args: str) -> str:
    """Run ``manage.py ARGS`` with the child's environment; its stdout, or a failure with its output."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, (
        f"manage.py {args[0]} exited with {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result.stdout


@pytest.fixture(autouse=True)
def chromium_path() -> Path:
    """Checked first (autouse), so a missing browser skips before any server is started."""
    if not CHROMIUM.exists():
        reason = f"needs Debian's Chromium at {CHROMIUM} (apt-get install chromium); never downloaded"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must provide it)")
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
def scripted_llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture
def netops_server(tmp_path: Path, scripted_llm: ScriptedLLM) -> Iterator[RunningNetops]:
    """netops under daphne on a free loopback port, migrated, with a user, the model and a healthy server."""
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    env = _child_env(var_dir)
    with mcp_demo_server("http") as mcp:
        _manage(env, "migrate", "--noinput")
        setup_env = {
            **env,
            "E2E_USERNAME": USERNAME,
            "E2E_PASSWORD": PASSWORD,
            "E2E_LLM_URL": scripted_llm.base_url,
            "E2E_MCP_URL": mcp.base_url + "/mcp",
            "E2E_MCP_NAME": MCP_SERVER_NAME,
        }
        out = _manage(setup_env, "shell", "-c", _SETUP)
        expected_db = f"E2E-DATABASE sqlite {var_dir / 'db.sqlite3'}"
        assert expected_db in out, f"the netops child must use its own SQLite database: {out!r}"
        out = _manage(env, "check_mcp_servers")
        assert f"{MCP_SERVER_NAME}: healthy" in out, out

        log = tmp_path / "daphne.log"
        with daphne(env, log=log) as server:
            yield RunningNetops(server.base_url, USERNAME, PASSWORD, var_dir, log)


@pytest.fixture
def playwright_instance() -> Iterator[Playwright]:
    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture
def browser(playwright_instance: Playwright, chromium_path: Path) -> Iterator[Browser]:
    browser = playwright_instance.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture
def page(browser: Browser, netops_server: RunningNetops) -> Iterator[Page]:
    context = browser.new_context(
        base_url=netops_server.base_url, accept_downloads=True, viewport={"width": 1280, "height": 900}
    )
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
