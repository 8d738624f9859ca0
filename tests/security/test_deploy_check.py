"""``manage.py check --deploy`` is clean with the README's production settings, all from the environment.

The check runs in a child process with a production-like environment (no settings module tricks), so
it sees exactly what an operator who follows README and ``.env.example`` gets. drf-spectacular's
schema warnings are part of the deploy check (``drf_spectacular.W001``), so they must be gone too.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.test import Client

from tests.support.daphne import standalone_env
from tests.support.processes import ROOT

PRODUCTION = {
    "DEBUG": "false",
    "ALLOWED_HOSTS": "netops.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://netops.example.com",
    "TRUSTED_PROXIES": "10.0.0.0/8",
    "SESSION_COOKIE_SECURE": "true",
    "CSRF_COOKIE_SECURE": "true",
    "SECURE_SSL_REDIRECT": "true",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "SECURE_HSTS_PRELOAD": "true",
}


def _check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=standalone_env(tmp_path, SECRET_KEY=secrets.token_urlsafe(64), **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_deploy_check_is_clean_with_the_production_settings(tmp_path: Path) -> None:
    result = _check(tmp_path, **PRODUCTION)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no issues" in result.stdout


def test_the_https_settings_are_what_the_check_asks_for(tmp_path: Path) -> None:
    """Each HTTPS variable matters: without it the check fails, naming what is missing."""
    without_hsts = {**PRODUCTION, "SECURE_HSTS_SECONDS": "0"}
    result = _check(tmp_path, **without_hsts)
    assert result.returncode != 0 and "security.W004" in result.stderr
    without_redirect = {**PRODUCTION, "SECURE_SSL_REDIRECT": "false"}
    result = _check(tmp_path, **without_redirect)
    assert result.returncode != 0 and "security.W008" in result.stderr


def test_probes_are_not_redirected_to_https(settings: Any, db: Any) -> None:
    """Load balancers probe /healthz, /readyz and /metrics over plain HTTP; pages go to HTTPS."""
    settings.SECURE_SSL_REDIRECT = True
    settings.REDIS_URL = ""
    client = Client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    page = client.get("/accounts/login/")
    assert page.status_code == 301 and page["Location"].startswith("https://")
