"""API keys: created with the ``nop_`` prefix, shown once and stored hashed; revoked, expired keys and
keys of inactive owners are refused by the tool gateway (401); ``last_used_at`` records use."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.utils import timezone

from netops.errors import ApplicationError
from registry.keys import api_key_create, api_key_revoke, authenticate
from registry.models import APIKey, PermissionLevel

pytestmark = pytest.mark.django_db(transaction=True)


def _gateway(plain: str) -> Any:
    """``GET /api/mcp/tools`` with the key: the cheapest authenticated gateway request."""
    return Client().get("/api/mcp/tools", headers={"Authorization": f"Bearer {plain}"})


def _all_stored_text() -> str:
    """Every value of every column of every row of every table, as one string (the whole database)."""
    chunks: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            chunks += [repr(value) for row in cursor.fetchall() for value in row]
    return "\n".join(chunks)


def test_a_key_is_prefixed_returned_once_and_stored_only_as_prefix_and_hash(
    make_user: Callable[..., User],
) -> None:
    owner = make_user("ci")
    key, plain = api_key_create(owner=owner, name="ci reader", level=PermissionLevel.READ_ONLY)

    prefix, dot, secret = plain.partition(".")
    assert dot == "." and prefix.startswith("nop_") and len(prefix) == len("nop_") + 8
    assert len(secret) == 32
    stored = APIKey.objects.get(pk=key.pk)
    assert stored.prefix == prefix
    assert stored.owner == owner
    assert (stored.level, stored.rate_limit) == ("read_only", settings.API_KEY_DEFAULT_RATE_LIMIT)
    assert stored.expiry_date is None and stored.revoked is False and stored.last_used_at is None
    # Only a hash of the whole key is kept ...
    assert stored.hashed_key == "sha512$$" + hashlib.sha512(plain.encode()).hexdigest()
    # ... and the secret part is in no column of any table.
    everything = _all_stored_text()
    assert prefix in everything
    assert secret not in everything
    assert plain not in everything
    # Nothing on the model gives the plain key back.
    assert all(secret not in repr(value) for value in vars(stored).values())
    # The plain key works (once shown, it is the caller's to keep).
    assert _gateway(plain).status_code == 200


def test_two_keys_never_share_prefix_or_secret(make_user: Callable[..., User]) -> None:
    owner = make_user("ci")
    plains = [api_key_create(owner=owner, name=f"k{i}", level="read_only")[1] for i in range(5)]
    assert len({p.partition(".")[0] for p in plains}) == 5
    assert len({p.partition(".")[2] for p in plains}) == 5


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"level": "superuser"}, "level"),
        ({"level": "read_only", "rate_limit": 0}, "rate_limit"),
        ({"level": "read_only", "expires_in_days": 0}, "expires"),
    ],
)
def test_invalid_key_settings_are_refused_naming_the_field(
    make_user: Callable[..., User], fields: dict[str, Any], field: str
) -> None:
    with pytest.raises(ApplicationError) as caught:
        api_key_create(owner=make_user("ci"), name="bad", **fields)
    assert caught.value.field == field
    assert APIKey.objects.count() == 0


def test_a_revoked_key_gets_401(make_user: Callable[..., User]) -> None:
    key, plain = api_key_create(owner=make_user("ci"), name="ci", level="read_write")
    assert _gateway(plain).status_code == 200

    api_key_revoke(key=key)

    response = _gateway(plain)
    assert response.status_code == 401
    assert response.json() == {"error": "invalid, expired or revoked API key"}
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "X-RateLimit-Limit" not in response.headers
    assert authenticate(f"Bearer {plain}", allow_tokens=True) is None


def test_a_key_with_expiry_in_the_past_gets_401(make_user: Callable[..., User]) -> None:
    key, plain = api_key_create(owner=make_user("ci"), name="ci", level="read_only", expires_in_days=30)
    assert key.expiry_date is not None
    assert timedelta(days=29) < key.expiry_date - timezone.now() <= timedelta(days=30)
    assert _gateway(plain).status_code == 200  # not expired yet

    APIKey.objects.filter(pk=key.pk).update(expiry_date=timezone.now() - timedelta(minutes=1))

    response = _gateway(plain)
    assert response.status_code == 401, response.content
    assert response.json() == {"error": "invalid, expired or revoked API key"}
    assert authenticate(f"Bearer {plain}", allow_tokens=True) is None


def test_a_key_of_an_inactive_owner_gets_401(make_user: Callable[..., User]) -> None:
    owner = make_user("leaver")
    _, plain = api_key_create(owner=owner, name="leaver", level="read_write")
    assert _gateway(plain).status_code == 200

    owner.is_active = False
    owner.save(update_fields=["is_active"])

    response = _gateway(plain)
    assert response.status_code == 401
    assert authenticate(f"Bearer {plain}", allow_tokens=True) is None


@pytest.mark.parametrize(
    "tamper",
    [
        lambda plain: plain[:-1] + ("A" if plain[-1] != "A" else "B"),  # right prefix, wrong secret
        lambda plain: plain.partition(".")[0],  # the prefix alone
        lambda plain: "nop_XXXXXXXX." + plain.partition(".")[2],  # the secret with another prefix
    ],
    ids=["wrong-secret", "prefix-only", "wrong-prefix"],
)
def test_a_tampered_key_gets_401(make_user: Callable[..., User], tamper: Callable[[str], str]) -> None:
    _, plain = api_key_create(owner=make_user("ci"), name="ci", level="read_write")
    assert _gateway(tamper(plain)).status_code == 401
    assert _gateway(plain).status_code == 200


def test_last_used_at_is_set_when_the_key_is_used(make_user: Callable[..., User]) -> None:
    key, plain = api_key_create(owner=make_user("ci"), name="ci", level="read_only")
    assert APIKey.objects.get(pk=key.pk).last_used_at is None

    before = timezone.now()
    assert _gateway(plain).status_code == 200
    first = APIKey.objects.get(pk=key.pk).last_used_at
    assert first is not None and before <= first <= timezone.now()

    # Written at most once a minute per key: a second use right away leaves it alone ...
    assert _gateway(plain).status_code == 200
    assert APIKey.objects.get(pk=key.pk).last_used_at == first
    # ... and a use after that minute moves it.
    APIKey.objects.filter(pk=key.pk).update(last_used_at=first - timedelta(minutes=5))
    assert _gateway(plain).status_code == 200
    assert APIKey.objects.get(pk=key.pk).last_used_at >= first


def test_a_refused_key_does_not_touch_last_used_at(make_user: Callable[..., User]) -> None:
    key, plain = api_key_create(owner=make_user("ci"), name="ci", level="read_only")
    wrong = plain[:-1] + ("A" if plain[-1] != "A" else "B")
    assert _gateway(wrong).status_code == 401
    assert APIKey.objects.get(pk=key.pk).last_used_at is None


def test_a_key_authenticates_with_its_level_limit_and_owner(make_user: Callable[..., User]) -> None:
    owner = make_user("ops")
    key, plain = api_key_create(owner=owner, name="ops", level="read_write", rate_limit=42)
    for header in (f"Bearer {plain}", f"Token {plain}", f"  bearer   {plain} "):
        caller = authenticate(header, allow_tokens=False)
        assert caller is not None, header
        assert (caller.level, caller.rate_limit, caller.key_id) == ("read_write", 42, key.pk)
        assert caller.context.user_id == owner.pk
        assert caller.username == f"ops (key {key.prefix})"
    for header in ("", f"Basic {plain}", f"Bearer {plain} extra", "Bearer nop_"):
        assert authenticate(header, allow_tokens=False) is None, header
