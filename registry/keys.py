"""API keys and who is calling: one place that turns an ``Authorization`` header into a caller.

Keys (``nop_<prefix>.<secret>``) come from djangorestframework-api-key: shown once, stored hashed,
with expiry and revocation. The tool gateway accepts keys only; ``/mcp`` accepts keys and DRF
tokens of active users (as read_write, or admin for superusers).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.authtoken.models import Token

from netops.errors import ApplicationError
from registry.catalog import CallContext
from registry.models import APIKey, PermissionLevel

LEVELS = [PermissionLevel.READ_ONLY, PermissionLevel.READ_WRITE, PermissionLevel.ADMIN]
KEY_PREFIX = "nop_"
LAST_USED_PRECISION = timedelta(minutes=1)  # last_used_at is written at most once a minute per key


@dataclass(frozen=True)
class Caller:
    """An authenticated client of the gateway or ``/mcp``."""

    username: str
    level: str
    context: CallContext
    key_id: str | None = None
    rate_limit: int | None = None

    def may_call(self, required: str) -> bool:
        return level_allows(self.level, required)


def level_allows(level: str, required: str) -> bool:
    """read_only < read_write < admin."""
    return LEVELS.index(PermissionLevel(level)) >= LEVELS.index(PermissionLevel(required))


def api_key_create(
    *, owner: User, name: str, level: str, rate_limit: int | None = None, expires_in_days: int | None = None
) -> tuple[APIKey, str]:
    """Create a key; the plain key is returned once and never stored."""
    if level not in PermissionLevel.values:
        raise ApplicationError(f"level must be one of {', '.join(PermissionLevel.values)}", field="level")
    if rate_limit is not None and rate_limit < 1:
        raise ApplicationError("a rate limit is at least 1 request per hour", field="rate_limit")
    if expires_in_days is not None and expires_in_days < 1:
        raise ApplicationError("expiry is at least 1 day", field="expires")
    expiry = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
    return APIKey.objects.create_key(  # type: ignore[return-value]
        name=name[:50] or "key",
        owner=owner,
        level=level,
        rate_limit=rate_limit or settings.API_KEY_DEFAULT_RATE_LIMIT,
        expiry_date=expiry,
    )


def api_key_revoke(*, key: APIKey) -> APIKey:
    key.revoked = True
    key.save(update_fields=["revoked"])
    return key


def authenticate(authorization: str, *, allow_tokens: bool) -> Caller | None:
    """The caller for an ``Authorization`` header (``Bearer``/``Token``), or None. Synchronous."""
    scheme, _, credential = authorization.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() not in ("bearer", "token") or not credential or " " in credential:
        return None
    if credential.startswith(KEY_PREFIX):
        return _from_key(credential)
    if not allow_tokens:
        return None
    token = Token.objects.select_related("user").filter(key=credential).first()
    if token is None or not token.user.is_active:
        return None
    user = token.user
    level = PermissionLevel.ADMIN if user.is_superuser else PermissionLevel.READ_WRITE
    return Caller(
        user.get_username(), level, CallContext(user_id=user.pk, via=f"mcp client {user.get_username()}")
    )


def _from_key(credential: str) -> Caller | None:
    try:
        key = (
            APIKey.objects.get_usable_keys().select_related("owner").get(prefix=credential.partition(".")[0])
        )
    except APIKey.DoesNotExist:
        return None
    # The library leaves expiry to its DRF permission class; the gateway and /mcp check it here.
    if key.has_expired or not key.is_valid(credential) or not key.owner.is_active:
        return None
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > LAST_USED_PRECISION:
        APIKey.objects.filter(pk=key.pk).update(last_used_at=now)
    owner = key.owner.get_username()
    return Caller(
        username=f"{owner} (key {key.prefix})",
        level=key.level,
        context=CallContext(user_id=key.owner_id, via=f"api key {key.prefix} of {owner}"),
        key_id=key.pk,
        rate_limit=key.rate_limit,
    )
