"""Settings from the environment: empty values mean unset, so the embedded defaults apply."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support.processes import ROOT


def _settings(tmp_path: Path, **env: str) -> dict[str, str]:
    """DATABASES and the channel layer as a fresh process sees them with ``env``."""
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.DATABASES['default']['ENGINE'], str(s.DATABASES['default']['NAME']), "
        "s.CHANNEL_LAYERS['default']['BACKEND']]))"
    )
    child = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    child.update(DJANGO_SETTINGS_MODULE="netops.settings", NETOPS_VAR_DIR=str(tmp_path), **env)
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=child, capture_output=True, text=True, check=True
    )
    engine, name, layer = json.loads(out.stdout.strip().splitlines()[-1])
    return {"engine": engine, "name": name, "layer": layer}


def test_empty_database_and_redis_urls_mean_the_embedded_defaults(tmp_path: Path) -> None:
    got = _settings(tmp_path, DATABASE_URL="", REDIS_URL="")
    assert got == {
        "engine": "django.db.backends.sqlite3",
        "name": str(tmp_path / "db.sqlite3"),
        "layer": "channels.layers.InMemoryChannelLayer",
    }


def test_a_postgres_url_selects_postgresql(tmp_path: Path) -> None:
    got = _settings(tmp_path, DATABASE_URL="postgres://netops@db.example:5432/netops")
    assert (got["engine"], got["name"]) == ("django.db.backends.postgresql", "netops")
