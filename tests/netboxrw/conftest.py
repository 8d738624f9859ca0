"""A real NetBox for the NetBox-side tests: the ``netbox`` fixture (one server per test session).

The slow, once-per-machine work (installing NetBox into its own Python 3.12 virtualenv, migrating
the template database: minutes on the first run) happens right after collection, outside any test's
timeout, and only when a selected test uses ``netbox``. The fixture then clones the template and
starts gunicorn (seconds). Without PostgreSQL, Redis or Python 3.12 the tests are skipped locally
and fail in CI (``CI`` set), with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from netboxrw.client import NetBoxClient
from netboxrw.config import netbox_client
from tests.support.daphne import current_database_url, shared_env
from tests.support.netbox_server import (
    NETBOX_VERSION,
    NetBoxInstance,
    NetBoxUnavailable,
    check_prerequisites,
    prepare,
    start_netbox,
)
from tests.support.processes import ROOT

IN_CI = bool(os.environ.get("CI"))

# Set by pytest_collection_finish when preparing the install/template failed (reported by the fixture).
_prepare_failure: list[BaseException] = []


def _unavailable(reason: str) -> NoReturn:
    if IN_CI:
        pytest.fail(f"{reason} (CI must provide it)")
    pytest.skip(reason)


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if not any("netbox" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    try:
        check_prerequisites(NETBOX_VERSION)
    except NetBoxUnavailable:
        return  # the fixture skips (or fails in CI) with the reason
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")

    def progress(message: str) -> None:
        if reporter is not None:
            reporter.write_line(f"netbox: {message}")

    try:
        prepare(NETBOX_VERSION, progress=progress)
    except Exception as exc:
        _prepare_failure.append(exc)


@pytest.fixture(scope="session")
def netbox() -> Iterator[NetBoxInstance]:
    """A running NetBox (API at ``netbox.url + '/api/'``) on its own database, shared by the session."""
    if _prepare_failure:
        raise _prepare_failure[0]
    try:
        instance = start_netbox(NETBOX_VERSION)
    except NetBoxUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def nb(netbox: NetBoxInstance, settings: Any) -> NetBoxClient:
    """netops pointed at the test NetBox (v2 token): its shared client."""
    settings.NETBOX_URL = netbox.url
    settings.NETBOX_TOKEN = netbox.token_v2
    client = netbox_client()
    assert client is not None
    return client


@pytest.fixture
def start_worker(
    require_postgres: None, netbox: NetBoxInstance, tmp_path: Path
) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``manage.py worker`` children on the test database and NetBox (``extra`` env on top)."""
    children: list[subprocess.Popen[bytes]] = []

    def start(name: str, **extra: str) -> subprocess.Popen[bytes]:
        settings = {
            "NETBOX_URL": netbox.url,
            "NETBOX_TOKEN": netbox.token_v2,
            "CHANGE_APPLY_LEASE_SECONDS": "3",
            "CHANGE_RECOVERY_INTERVAL": "1",
            "MCP_HEALTH_CHECK_INTERVAL": "0",
        }
        env = shared_env(
            tmp_path,
            database_url=current_database_url(),
            redis_url=os.environ.get("REDIS_URL", ""),
            **{**settings, **extra},
        )
        log = (tmp_path / f"worker-{name}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "manage.py", "worker", "--worker-id", name, "--interval", "0.2"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        children.append(process)
        return process

    yield start
    for process in children:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
