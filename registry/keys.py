"""API keys and who is calling: one place that turns an ``Authorization`` header into a caller.

Keys (``nop_<prefix>.<secret>``) come from djangorestframework-api-key: shown once, stored hashed,
with expiry and revocation. The tool gateway accepts keys only; ``/mcp`` accepts keys and DRF
tokens of active users (at the level registry.key_policy.token_level gives them).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.authtoken.models import Token

from netops.errors import ApplicationError
from registry.catalog import CallContext
from registry.key_policy import api_key_policy_check, token_level
from registry.models import APIKey, PermissionLevel

LEVELS = [PermissionLevel.READ_ONLY, PermissionLevel.READ_WRITE, PermissionLevel.ADMIN]
KEY_PREFIX = "nop_"
LAST_USED_PRECISION = timedelta(minutes=1)  # last_used_at is written at most once a minute per key
# What the database and the calendar can hold (a 32-bit column; datetime ends in the year 9999):
# beyond these a key would fail as a 500 (OverflowError, integer out of range), not as a 400.
RATE_LIMIT_MAX = 2_147_483_647
EXPIRY_DAYS_MAX = 36_500


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
    if rate_limit is not None and not 1 <= rate_limit <= RATE_LIMIT_MAX:
        raise ApplicationError(
            f"a rate limit is from 1 to {RATE_LIMIT_MAX} requests per hour", field="rate_limit"
        )
    if expires_in_days is not None and not 1 <= expires_in_days <= EXPIRY_DAYS_MAX:
        raise ApplicationError(f"expiry is from 1 to {EXPIRY_DAYS_MAX} days", field="expires")
    api_key_policy_check(owner=owner, level=level, rate_limit=rate_limit)
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
    level = token_level(user)
    return Caller(
        user.get_username(), level, CallContext(user_id=user.pk, via=f"mcp client {user.get_username()}")
    )


class _VerifiedKeys:
    """Which presented keys were verified against which stored hash, in this process.

    Keyed by a SHA-256 digest of the full presented key (never the key itself), holding the row's
    ``hashed_key`` it matched. A hit only skips the hash check: the row is still read on every
    request, so revocation, expiry, an inactive owner or a deleted key stop the next request, and
    a changed ``hashed_key`` (a key re-hashed or replaced) no longer matches the entry. A wrong key
    has a different digest, so it is always checked by the library. Bounded, least recently used
    out first.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._entries: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def digest(credential: str) -> str:
        return hashlib.sha256(credential.encode("utf-8", "surrogatepass")).hexdigest()

    def matches(self, credential: str, hashed_key: str) -> bool:
        digest = self.digest(credential)
        with self._lock:
            if self._entries.get(digest) != hashed_key:
                return False
            self._entries.move_to_end(digest)
            return True

    def remember(self, credential: str, hashed_key: str) -> None:
        with self._lock:
            self._entries[self.digest(credential)] = hashed_key
            self._entries.move_to_end(self.digest(credential))
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


verified_keys = _VerifiedKeys()


def _verified(key: APIKey, credential: str) -> bool:
    """Whether ``credential`` is ``key``'s secret: from :data:`verified_keys`, else by the library's
    hash check (which may re-hash a key stored with an older hasher; the new hash is remembered)."""
    if verified_keys.matches(credential, key.hashed_key):
        return True
    if not key.is_valid(credential):
        return False
    verified_keys.remember(credential, key.hashed_key)
    return True


def _from_key(credential: str) -> Caller | None:
    try:
        key = (
            APIKey.objects.get_usable_keys().select_related("owner").get(prefix=credential.partition(".")[0])
        )
    except APIKey.DoesNotExist:
        return None
    # The library leaves expiry to its DRF permission class; the gateway and /mcp check it here.
    if key.has_expired or not key.owner.is_active or not _verified(key, credential):
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
