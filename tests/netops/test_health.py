"""/healthz and /readyz."""

from __future__ import annotations

import pytest
from django.test import Client


@pytest.mark.django_db
def test_healthz_answers_without_login() -> None:
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_names_the_database_check(settings) -> None:
    settings.REDIS_URL = ""
    response = Client().get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"]["ok"] is True
    assert "redis" not in body["checks"]  # only checked when REDIS_URL is set


@pytest.mark.django_db
def test_readyz_is_503_when_redis_is_configured_but_unreachable(settings) -> None:
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


@pytest.mark.django_db
def test_readyz_checks_a_real_redis(settings, redis_url: str) -> None:
    settings.REDIS_URL = redis_url
    response = Client().get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["redis"] == {
        "ok": True,
        "required": True,
        "detail": "pong",
        "duration_ms": response.json()["checks"]["redis"]["duration_ms"],
    }
