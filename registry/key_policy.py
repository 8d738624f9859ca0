"""What a credential may do on ``/mcp`` and the gateway: permission level and rate-limit ceilings.

Two kinds of credential reach the tool faces:

* **API keys** (``nop_...``), minted for a purpose with a chosen level and hourly limit. Whoever
  mints one is bounded by :func:`api_key_policy_check`: only superusers get ``admin`` keys, and a
  non-superuser's limit is at most ``API_KEY_MAX_RATE_LIMIT`` requests per hour (default ten times
  ``API_KEY_DEFAULT_RATE_LIMIT``), so a self-service key cannot opt out of rate limiting.
* **A user's DRF token** on ``/mcp`` (the REST credential, not minted for tools): the level follows
  the user's permissions (:func:`token_level`) — ``admin`` for superusers, ``read_write`` only with
  ``netboxrw.add_changerequest`` (what read-write tools do is propose changes for review), else
  ``read_only`` — and its requests are counted per user at ``API_KEY_DEFAULT_RATE_LIMIT`` per hour
  (:func:`rate_bucket`), in a bucket of its own.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth.models import User

from netops.errors import ApplicationError, PermissionDeniedError
from registry.models import PermissionLevel

if TYPE_CHECKING:  # registry.keys may import this module for api_key_policy_check
    from registry.keys import Caller

# The permission that lets a user's token call read-write tools (they queue change requests).
READ_WRITE_PERMISSION = "netboxrw.add_changerequest"


def token_level(user: User) -> str:
    """The level of ``user``'s DRF token on ``/mcp`` (see the module docstring)."""
    if not user.is_active:
        return PermissionLevel.READ_ONLY
    if user.is_superuser:
        return PermissionLevel.ADMIN
    if user.has_perm(READ_WRITE_PERMISSION):
        return PermissionLevel.READ_WRITE
    return PermissionLevel.READ_ONLY


def token_caller(caller: Caller) -> Caller:
    """A DRF-token caller with the level of its user's permissions and the per-user rate limit.

    API-key callers come back unchanged: their key carries both. Synchronous (queries).
    """
    if caller.key_id is not None:
        return caller
    user_id = caller.context.user_id
    user = User.objects.filter(pk=user_id).first() if user_id is not None else None
    level = token_level(user) if user is not None else PermissionLevel.READ_ONLY
    return dataclasses.replace(caller, level=level, rate_limit=settings.API_KEY_DEFAULT_RATE_LIMIT)


def rate_bucket(caller: Caller) -> tuple[str, int]:
    """The rate-limit counter and hourly limit of a caller: its key's, or its user's for a token."""
    if caller.key_id is not None:
        return caller.key_id, caller.rate_limit or 1
    return f"user:{caller.context.user_id}", caller.rate_limit or settings.API_KEY_DEFAULT_RATE_LIMIT


def max_rate_limit() -> int:
    return int(settings.API_KEY_MAX_RATE_LIMIT)


def api_key_policy_check(*, owner: User, level: str, rate_limit: int | None) -> None:
    """Refuse a key its owner may not hold: ``admin`` for non-superusers, or a limit above the ceiling.

    Raises :class:`PermissionDeniedError` (403) naming ``level``, or :class:`ApplicationError` (400)
    naming ``rate_limit``. Superusers are bounded by neither.
    """
    if owner.is_superuser:
        return
    if level == PermissionLevel.ADMIN:
        raise PermissionDeniedError("only superusers may hold admin-level keys", field="level")
    ceiling = max_rate_limit()
    if rate_limit is not None and rate_limit > ceiling:
        raise ApplicationError(
            f"at most {ceiling} requests per hour (API_KEY_MAX_RATE_LIMIT)", field="rate_limit"
        )
