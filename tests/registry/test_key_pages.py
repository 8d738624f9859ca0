""" "My API keys" page and ``manage.py create_api_key``."""

from __future__ import annotations

import re
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from registry.keys import authenticate
from registry.models import APIKey

pytestmark = pytest.mark.django_db


def test_my_keys_shows_a_new_key_once_and_revokes(make_user: Any) -> None:
    user = make_user("alice")
    client = Client()
    client.force_login(user)
    created = client.post("/registry/keys/", {"name": "ci pipeline", "level": "read_only", "rate_limit": 50})
    assert created.status_code == 200
    plain = re.search(r'<pre class="schema" id="new-key">(nop_[^<]+)</pre>', created.content.decode()).group(
        1
    )
    key = APIKey.objects.get(owner=user)
    assert plain.startswith(key.prefix + ".") and key.rate_limit == 50 and key.level == "read_only"
    assert plain not in client.get("/registry/keys/").content.decode()  # shown once
    assert authenticate(f"Bearer {plain}", allow_tokens=False) is not None
    client.post(f"/registry/keys/{key.prefix}/revoke/")
    assert authenticate(f"Bearer {plain}", allow_tokens=False) is None


def test_only_superusers_create_admin_keys_and_others_keys_are_untouchable(make_user: Any) -> None:
    alice, mallory = make_user("alice"), make_user("mallory")
    client = Client()
    client.force_login(alice)
    refused = client.post("/registry/keys/", {"name": "x", "level": "admin"})
    assert refused.status_code == 400 and "only administrators" in refused.content.decode()
    assert not APIKey.objects.exists()
    key, _ = APIKey.objects.create_key(name="m", owner=mallory, level="read_only")
    assert client.post(f"/registry/keys/{key.prefix}/revoke/").status_code == 404
    key.refresh_from_db()
    assert key.revoked is False
    assert key.prefix not in client.get("/registry/keys/").content.decode()


def test_create_api_key_command_prints_only_the_key(make_user: Any) -> None:
    make_user("automation")
    out, err = StringIO(), StringIO()
    call_command(
        "create_api_key",
        "--user",
        "automation",
        "--level",
        "read_write",
        "--rate-limit",
        "7",
        "--expires",
        "3",
        stdout=out,
        stderr=err,
    )
    plain = out.getvalue().strip()
    assert re.fullmatch(r"nop_\w{8}\.\w{32}", plain)
    key = APIKey.objects.get()
    assert key.level == "read_write" and key.rate_limit == 7 and key.expiry_date is not None
    assert "shown only now" in err.getvalue()
    caller = authenticate(f"Bearer {plain}", allow_tokens=False)
    assert caller is not None and caller.level == "read_write"
    with pytest.raises(CommandError, match="no active user"):
        call_command("create_api_key", "--user", "ghost", "--level", "read_only")
