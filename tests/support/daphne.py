"""Run netops itself as a child process: ``manage.py`` commands and daphne on a free loopback port.

Two kinds of child are used by the tests:

- a *standalone* netops on its embedded defaults (its own SQLite database in a temporary var dir,
  no ``DATABASE_URL`` or ``REDIS_URL``), set up with ``manage.py migrate`` and ``manage.py shell -c``
  (:func:`standalone_env`);
- a netops sharing the test process's PostgreSQL database and a Redis, to check what several
  processes must agree on (:func:`shared_env`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.processes import ROOT, RunningServer, free_port, wait_for_http

# What a standalone child must not inherit from the test process: it runs on its own defaults.
CHILD_ENV_DROP = frozenset(
    {
        "DATABASE_URL",
        "REDIS_URL",
        "SESSION_COOKIE_SECURE",
        "CSRF_COOKIE_SECURE",
        "DJANGO_SETTINGS_MODULE",
        "NETBOX_URL",
        "NETBOX_TOKEN",
    }
)


def standalone_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a netops on its embedded defaults, with its files in ``var_dir``."""
    env = {key: value for key, value in os.environ.items() if key not in CHILD_ENV_DROP}
    env.update(
        NETOPS_VAR_DIR=str(var_dir),
        DJANGO_SETTINGS_MODULE="netops.settings",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def shared_env(var_dir: Path, *, database_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a netops on the given PostgreSQL database and Redis."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PYTEST")}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        NETOPS_VAR_DIR=str(var_dir),
        DJANGO_SETTINGS_MODULE="netops.settings",
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env


def current_database_url() -> str:
    """The URL of the database this (test) process uses, for children that must share it."""
    from django.db import connection

    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host, port = db.get("HOST") or "127.0.0.1", db.get("PORT") or 5432
    return f"postgres://{db['USER']}{password}@{host}:{port}/{db['NAME']}"


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    """Run ``manage.py ARGS`` in a child with ``env``; its stdout (it must succeed)."""
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"manage.py {args[0]}: {result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    return result.stdout


@contextmanager
def daphne(
    env: dict[str, str],
    *,
    log: Path,
    timeout: float = 60,
    print_log: bool = True,
    app: str = "netops.asgi:application",
) -> Iterator[RunningServer]:
    """netops under daphne on a free loopback port until the block ends; the log tail is printed then
    (pytest shows it for failed tests only). ``app`` is the ASGI application (a bench may wrap netops')."""
    port = free_port()
    executable = str(Path(sys.executable).with_name("daphne"))
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [executable, "-v", "0", "-b", "127.0.0.1", "-p", str(port), app],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = RunningServer(process, port)
    try:
        wait_for_http(f"{server.base_url}/healthz", timeout=timeout, process=process)
        yield server
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if print_log:
            print(f"--- daphne :{port} log (tail) ---\n{log.read_text(errors='replace')[-4000:]}")
