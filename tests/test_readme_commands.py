"""The README's two commands stay true: the start command works from a fresh clone, CI runs the test one."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.processes import ROOT, free_port, wait_for_http

README = ROOT / "README.md"


def readme_commands() -> tuple[str, str]:
    """The two commands of the README's "The two commands" section: (start, test)."""
    section = README.read_text().split("## The two commands", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)\n```", section, flags=re.S)
    assert len(blocks) == 2, f"expected exactly two command blocks, found {blocks}"
    return blocks[0].strip(), blocks[1].strip()


def test_ci_runs_the_readme_test_command() -> None:
    _, test_command = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(rf"^{re.escape(test_command)}\s*$", ci, flags=re.M), (
        f".ci/run must call {test_command!r}"
    )


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_start_command_serves_healthz_and_login_from_a_fresh_clone(tmp_path: Path) -> None:
    start_command, _ = readme_commands()
    clone = tmp_path / "netops"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    port = free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "REDIS_URL", "VIRTUAL_ENV", "PYTHONPATH", "DJANGO_SETTINGS_MODULE"}
        and not key.startswith("PYTEST")
    }
    env.update(PORT=str(port), HOST="127.0.0.1")
    log = tmp_path / "start.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            shlex.split(start_command), cwd=clone, env=env, stdout=out, stderr=subprocess.STDOUT
        )
        try:
            wait_for_http(f"http://127.0.0.1:{port}/healthz", timeout=780, process=process)
            health = httpx.get(f"http://127.0.0.1:{port}/healthz")
            login = httpx.get(f"http://127.0.0.1:{port}/accounts/login/")
            home = httpx.get(f"http://127.0.0.1:{port}/", follow_redirects=False)
        finally:
            process.terminate()
            process.wait(timeout=20)
    output = log.read_text(errors="replace")
    assert health.json() == {"status": "ok"}, output[-2000:]
    assert login.status_code == 200
    assert 'type="password"' in login.text
    assert home.status_code == 302 and home.headers["location"].startswith("/accounts/login/")
    assert "createsuperuser" in output  # tells how to create the first admin
    assert (clone / "var" / "db.sqlite3").exists()  # embedded default database
