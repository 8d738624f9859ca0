"""Shared fixtures: real services (PostgreSQL, Redis), users with permissions, API clients.

In CI (``CI`` set) a test that needs PostgreSQL or Redis fails when the service is unreachable;
on a developer machine it is skipped with the reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
import redis
from django.contrib.auth.models import Permission, User
from django.db import connection
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

IN_CI = bool(os.environ.get("CI"))


@pytest.fixture(autouse=True)
def _process_secrets_restored() -> Iterator[None]:
    """Secrets a test registers stay in that test.

    The process-wide set shapes every later stream: a registered ``very-secret-…`` makes the chat
    stream hold back a trailing "very" as the possible start of a secret, so a later test that waits
    for it would hang. Each test starts from the set as it was before it.
    """
    from netops import redaction

    before = set(redaction._process_secrets)
    yield
    with redaction._lock:
        redaction._process_secrets.clear()
        redaction._process_secrets.update(before)


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI must provide it)")
    pytest.skip(reason)


@pytest.fixture
def require_postgres() -> None:
    """The test needs the database to be PostgreSQL (row locks, real concurrency)."""
    if connection.vendor != "postgresql":
        _unavailable("needs PostgreSQL: set DATABASE_URL=postgres://... (CI does)")


@pytest.fixture
def redis_url() -> str:
    """A reachable Redis URL (``REDIS_URL``, else the local default), flushed DB 15 for isolation."""
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unavailable(f"needs Redis at {url}: {exc}")
    finally:
        client.close()
    return url


@pytest.fixture
def make_user(db: None) -> Callable[..., User]:
    """Create a user with the given ``app_label.codename`` permissions."""

    def make(username: str = "engineer", *perms: str, superuser: bool = False, staff: bool = False) -> User:
        if superuser:
            user = User.objects.create_superuser(username, f"{username}@example.com", "pw-for-tests-1")
        else:
            user = User.objects.create_user(
                username, f"{username}@example.com", "pw-for-tests-1", is_staff=staff
            )
        for perm in perms:
            app_label, codename = perm.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        return User.objects.get(pk=user.pk)  # reload: permission cache

    return make


@pytest.fixture
def token_client() -> Callable[[User | None], APIClient]:
    """An API client authenticated with the user's DRF token (or anonymous for None)."""

    def make(user: User | None) -> APIClient:
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


@pytest.fixture
def admin_user(make_user: Callable[..., User]) -> User:
    return make_user("root", superuser=True)


@pytest.fixture
def admin_api(admin_user: User, token_client: Callable[[User | None], APIClient]) -> APIClient:
    return token_client(admin_user)
