"""The npm reference MCP server ``@modelcontextprotocol/server-everything``, pinned, run over stdio.

Installed once with npm (the machine's registry) into ``var/npm/everything`` (ignored by git) and
run with ``node`` directly, so a test never waits for ``npx`` resolution. Its tools used here:
``get-tiny-image`` (an image item and text), ``get-resource-links`` (resource links),
``trigger-long-running-operation`` (progress notifications with a total), ``get-sum``.
"""

from __future__ import annotations

import fcntl
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.processes import ROOT

PACKAGE = "@modelcontextprotocol/server-everything"
VERSION = "2026.8.31"
PREFIX = ROOT / "var" / "npm" / "everything"
ENTRY = PREFIX / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"


def everything_command() -> list[str]:
    """``node .../server-everything/dist/index.js stdio``, installing the package on first use.

    Skips the test when node or npm is missing (the project's CI image has both).
    """
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("node and npm are needed for the npm reference MCP server")
    PREFIX.mkdir(parents=True, exist_ok=True)
    with open(PREFIX / ".lock", "w") as lock:  # parallel test processes install once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ENTRY.exists():
            subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--prefix", str(PREFIX), f"{PACKAGE}@{VERSION}"],
                check=True,
                capture_output=True,
                timeout=300,
            )
    return [node, str(ENTRY), "stdio"]


def everything_entry() -> Path:
    return ENTRY
