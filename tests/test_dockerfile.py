"""The image's runtime stage holds everything netops needs (no Docker engine runs here).

The runtime stage's ``COPY`` lines are parsed and exactly those files are laid out in a temporary
directory, which then runs ``manage.py check`` and ``migrate`` with the image's environment. An app
the image forgets to copy (chat and netboxrw once were) fails here as it would in the container.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _runtime_stage() -> list[str]:
    lines = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    stages: list[list[str]] = []
    for line in lines:
        if re.match(r"^FROM\s", line):
            stages.append([])
        if stages:
            stages[-1].append(line.strip())
    return stages[-1]


def _env(stage: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in stage:
        if line.startswith("ENV "):
            env.update(re.findall(r"(\w+)=(\S+)", line[4:]))
    return env


def test_the_build_installs_from_the_lock_file() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert "--require-hashes -r requirements/app.lock" in text
    assert "pyproject.toml" not in text.split("FROM python:3.12-slim AS runtime")[0].split("COPY")[1]


@pytest.mark.slow
def test_the_runtime_stage_copies_everything_netops_needs(tmp_path: Path) -> None:
    stage = _runtime_stage()
    app = tmp_path / "app"
    app.mkdir()
    copies = [line.split()[1:] for line in stage if line.startswith("COPY ") and "--from=" not in line]
    assert copies, "the runtime stage copies the source"
    for source, target in copies:
        destination = app / target
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, destination, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / source, destination)
    image_env = _env(stage)
    env = {key: value for key, value in os.environ.items() if key in ("PATH", "HOME", "LANG")}
    env.update(
        {key: value for key, value in image_env.items() if key != "PATH"},
        PYTHONPATH=str(app),
        NETOPS_VAR_DIR=str(tmp_path / "var"),
        STATIC_ROOT=str(tmp_path / "static"),
        SECRET_KEY="image-test-" + "x" * 40,
    )
    for command in (["check", "--fail-level", "ERROR"], ["migrate", "--noinput"], ["worker", "--help"]):
        result = subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=app,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, f"manage.py {command[0]} in the image layout:\n{result.stderr[-3000:]}"
    assert (tmp_path / "var" / "db.sqlite3").exists()
