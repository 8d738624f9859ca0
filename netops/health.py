"""Liveness (``/healthz``) and readiness (``/readyz``) endpoints.

``/readyz`` runs every registered check with a short bound and answers 503 when a required one
fails. Apps add their own checks (NetBox reachability, for instance) with :func:`register_check`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

CHECK_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class ReadinessCheck:
    """A named probe; ``probe`` raises on failure and returns a short detail on success."""

    name: str
    probe: Callable[[], str]
    required: bool = True
    enabled: Callable[[], bool] = lambda: True


_checks: dict[str, ReadinessCheck] = {}


def register_check(check: ReadinessCheck) -> None:
    """Add (or replace) a readiness check."""
    _checks[check.name] = check


def _database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


def _redis() -> str:
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=CHECK_TIMEOUT_SECONDS, socket_connect_timeout=CHECK_TIMEOUT_SECONDS
    )
    try:
        client.ping()
    finally:
        client.close()
    return "pong"


register_check(ReadinessCheck("database", _database))
register_check(ReadinessCheck("redis", _redis, enabled=lambda: bool(settings.REDIS_URL)))


def active_checks() -> list[ReadinessCheck]:
    """The checks that apply to this configuration (Redis only when ``REDIS_URL`` is set, ...)."""
    return [c for c in _checks.values() if c.enabled()]


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving requests; touches nothing else."""
    return JsonResponse({"status": "ok"})


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Every dependency this process needs is reachable; 503 names what is not."""
    results: dict[str, dict[str, object]] = {}
    ready = True
    for check in active_checks():
        started = time.perf_counter()
        try:
            detail = check.probe()
            ok = True
        except Exception as exc:  # every failure is reported, none is raised
            detail, ok = f"{type(exc).__name__}: {exc}", False
        results[check.name] = {
            "ok": ok,
            "required": check.required,
            "detail": detail,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
        }
        ready = ready and (ok or not check.required)
    return JsonResponse(
        {"status": "ready" if ready else "not_ready", "checks": results}, status=200 if ready else 503
    )
