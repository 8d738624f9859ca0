"""Who may use the tool faces, how often, and the record of what they did.

One service for both faces that take API keys — the REST tool gateway (``registry/gateway/views.py``)
and netops' MCP endpoint (``registry/mcp_endpoint.py``) — so that they cannot drift:

* :func:`admit` turns an ``Authorization`` header into an :class:`Admission` (the caller and its
  rate state) or raises one typed refusal: :class:`Unauthenticated` (401), :class:`Forbidden` (403,
  from :func:`require_level`), :class:`RateLimited` (429, with ``Retry-After``) or
  :class:`RateLimiterUnavailable` (503). Each face maps the refusal's *type* to its status and
  headers (:attr:`AccessRefused.status_code`, :meth:`AccessRefused.headers`), never its words.
  API keys on both faces; DRF tokens on ``/mcp`` only, at the level :mod:`registry.key_policy`
  gives their user. An API key's hourly limit is one counter for both faces and every process.
* :func:`audit` records a :class:`~registry.models.ToolCallAudit` row with the request id, for both
  faces alike. Rows are written in batches (group commit): a call waits until its own row is
  committed — so no answered call is ever unaudited — but concurrent calls share one insert and one
  trip to the database thread instead of one each.

Admission costs one trip to the database thread (the key's row, the rate counter and, at most once
a minute, ``last_used_at``); ``admit_sync`` is the same for a face that does more in that trip.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from channels.db import database_sync_to_async
from django_guid.utils import generate_guid

from netops.errors import ApplicationError
from netops.text import clean_text
from registry import key_policy, ratelimit
from registry.keys import KEY_PREFIX, Caller, authenticate
from registry.models import ToolCallAudit

logger = logging.getLogger(__name__)

Via = Literal["gateway", "mcp"]
REQUEST_ID_MAX = 64  # ToolCallAudit.request_id
_REQUEST_ID_CHARACTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


# --- refusals ---------------------------------------------------------------------------------------


class AccessRefused(ApplicationError):
    """A request the tool faces refuse before calling anything; the type decides the status.

    ``caller`` is set when the credential was good (the refusal is then audited for a call);
    ``rate`` when the request was counted (its headers go on the answer).
    """

    status_code = 400
    code = "access_refused"

    def __init__(
        self, message: str, *, caller: Caller | None = None, rate: ratelimit.RateState | None = None
    ):
        super().__init__(message)
        self.caller = caller
        self.rate = rate

    def headers(self) -> dict[str, str]:
        return self.rate.headers() if self.rate is not None else {}


class Unauthenticated(AccessRefused):
    """No credential, or one that is wrong, revoked, expired or of an inactive owner."""

    status_code = 401
    code = "unauthenticated"

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "WWW-Authenticate": "Bearer"}


class Forbidden(AccessRefused):
    """A good credential whose level is below what the tool needs."""

    status_code = 403
    code = "forbidden"


class RateLimited(AccessRefused):
    """The credential's hourly limit is used up; the headers say when it resets (``Retry-After``)."""

    status_code = 429
    code = "rate_limited"


class RateLimiterUnavailable(AccessRefused):
    """The shared counter (Redis) is unreachable: refused rather than served uncounted."""

    status_code = 503
    code = "rate_limit_unavailable"


# --- admission --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Admission:
    """An admitted request: who asks, its rate state after counting it, and what it is audited under."""

    caller: Caller
    rate: ratelimit.RateState
    via: Via
    request_id: str
    client_address: str | None = None
    started: float = field(default_factory=time.perf_counter)

    def headers(self) -> dict[str, str]:
        """The ``X-RateLimit-*`` headers every answer to an admitted request carries."""
        return self.rate.headers()

    def may_call(self, required: str) -> bool:
        return self.caller.may_call(required)


_MISSING = {
    "gateway": "authentication required: Authorization: Bearer nop_...",
    "mcp": "authentication required: Authorization: Bearer <token>",
}
_INVALID = {"gateway": "invalid, expired or revoked API key", "mcp": "invalid token"}


def admit_sync(
    authorization: str | None,
    *,
    via: Via,
    request_id: str,
    client_address: str | None = None,
    started: float | None = None,
) -> Admission:
    """:func:`admit`, synchronously (queries and the rate counter): for the database thread."""
    started = time.perf_counter() if started is None else started
    if not authorization:
        raise Unauthenticated(_MISSING[via])
    caller = authenticate(authorization, allow_tokens=via == "mcp")
    if caller is None:
        logger.info(
            "tool access refused: bad credential",
            extra={"via": via, "client_address": client_address, "key_like": _looks_like_key(authorization)},
        )
        raise Unauthenticated(_INVALID[via])
    caller = key_policy.token_caller(caller)  # a token's level and limit follow its user
    try:
        rate = ratelimit.hit(*key_policy.rate_bucket(caller))
    except ratelimit.RateLimitUnavailable as exc:
        raise RateLimiterUnavailable(exc.message, caller=caller) from None
    if not rate.allowed:
        raise RateLimited(f"rate limit of {rate.limit} requests per hour exceeded", caller=caller, rate=rate)
    return Admission(caller, rate, via, request_id, client_address, started)


async def admit(
    authorization: str | None, *, via: Via, request_id: str, client_address: str | None = None
) -> Admission:
    """The admitted request for an ``Authorization`` header, or a typed :class:`AccessRefused`.

    One trip to the database thread; a missing header is refused without one.
    """
    started = time.perf_counter()
    if not authorization:
        raise Unauthenticated(_MISSING[via])
    return await database_sync_to_async(admit_sync)(
        authorization, via=via, request_id=request_id, client_address=client_address, started=started
    )


def require_level(admission: Admission, *, required: str, tool: str) -> None:
    """Raise :class:`Forbidden` unless the caller's level reaches ``required``."""
    if not admission.may_call(required):
        raise Forbidden(
            f"{tool} needs the {required} level; this key has {admission.caller.level}",
            caller=admission.caller,
            rate=admission.rate,
        )


def _looks_like_key(authorization: str) -> bool:
    return KEY_PREFIX in authorization


def request_id_from(header: str | None) -> str:
    """The request id for a request outside Django's middleware (``/mcp``), by django-guid's rule:
    the client's ``X-Request-ID`` when it is a plain token of at most 64 characters, else a new one."""
    if header and len(header) <= REQUEST_ID_MAX and set(header) <= _REQUEST_ID_CHARACTERS:
        return header
    return generate_guid()


# --- audit -------------------------------------------------------------------------------------------


def arguments_digest(raw: bytes | Mapping[str, Any]) -> str:
    """SHA-256 of the arguments as canonical JSON (the same for the gateway and /mcp), never the arguments."""
    value: Any = raw
    if isinstance(raw, bytes):
        try:
            value = json.loads(raw or b"{}")
        except (ValueError, RecursionError):
            return hashlib.sha256(raw).hexdigest()
    try:
        canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    except (ValueError, RecursionError):  # circular or too deep: still a digest, never an error
        canonical = repr(value)
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def audit_row(
    *,
    via: Via,
    caller: Caller,
    request_id: str,
    tool: str,
    arguments: bytes | Mapping[str, Any],
    status: int,
    duration_ms: float,
) -> ToolCallAudit:
    """The (unsaved) audit row of one call; hostile text is cleaned and cut to the columns."""
    return ToolCallAudit(
        via=via,
        api_key_id=caller.key_id,
        user_id=caller.context.user_id,
        caller=clean_text(caller.username)[:200],
        tool=clean_text(tool)[:100],
        arguments_digest=arguments_digest(arguments),
        status=status,
        duration_ms=max(duration_ms, 0.001),
        request_id=clean_text(request_id)[:REQUEST_ID_MAX],
    )


async def audit(
    admission: Admission | AccessRefused,
    *,
    tool: str,
    arguments: bytes | Mapping[str, Any],
    status: int,
    via: Via | None = None,
    request_id: str | None = None,
    duration_ms: float | None = None,
) -> None:
    """Record one call; returns once its row is committed (batched with concurrent calls' rows).

    For a refusal, ``via`` and ``request_id`` are given and the row is written only when the
    credential was good (``refusal.caller``): an unauthenticated request has nobody to attribute.
    """
    if isinstance(admission, AccessRefused):
        if admission.caller is None or via is None or request_id is None:
            return
        caller, row_via, row_request_id = admission.caller, via, request_id
        elapsed = duration_ms if duration_ms is not None else 0.001
    else:
        caller, row_via, row_request_id = admission.caller, admission.via, admission.request_id
        elapsed = duration_ms if duration_ms is not None else (time.perf_counter() - admission.started) * 1000
    row = audit_row(
        via=row_via,
        caller=caller,
        request_id=row_request_id,
        tool=tool,
        arguments=arguments,
        status=status,
        duration_ms=elapsed,
    )
    await _writer().write(row)


class _AuditWriter:
    """Group commit of audit rows for one event loop.

    Rows arriving while an insert is under way wait for the next one; every writer waits for its
    own row. The wait is shielded: a request cancelled meanwhile (a client gone) still gets its
    row. A batch that fails is retried row by row, and a row that still fails is logged with every
    field (the digest, never the arguments), so the record survives in the logs.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: list[tuple[ToolCallAudit, asyncio.Future[None]]] = []
        self._flushing: asyncio.Task[None] | None = None

    async def write(self, row: ToolCallAudit) -> None:
        done: asyncio.Future[None] = self._loop.create_future()
        self._pending.append((row, done))
        if self._flushing is None or self._flushing.done():
            self._flushing = self._loop.create_task(self._flush(), name="tool-audit-writer")
        await asyncio.shield(done)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                await database_sync_to_async(_insert)([row for row, _ in batch])
            except BaseException as exc:  # every waiter must hear back, even on cancellation
                for _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                for _, done in batch:
                    if not done.done():
                        done.set_result(None)


def _insert(rows: list[ToolCallAudit]) -> None:
    try:
        ToolCallAudit.objects.bulk_create(rows)
        return
    except Exception:
        if len(rows) == 1:
            _log_lost(rows[0])
            return
    for row in rows:  # one bad row must not take the batch's other rows with it
        try:
            row.save(force_insert=True)
        except Exception:
            _log_lost(row)


def _log_lost(row: ToolCallAudit) -> None:
    logger.exception(
        "tool call audit row could not be stored",
        extra={
            "audit": {
                "via": row.via,
                "api_key_id": row.api_key_id,
                "user_id": row.user_id,
                "caller": row.caller,
                "tool": row.tool,
                "arguments_digest": row.arguments_digest,
                "status": row.status,
                "duration_ms": row.duration_ms,
                "audit_request_id": row.request_id,
            }
        },
    )


_writers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _AuditWriter] = weakref.WeakKeyDictionary()


def _writer() -> _AuditWriter:
    loop = asyncio.get_running_loop()
    writer = _writers.get(loop)
    if writer is None:
        writer = _writers[loop] = _AuditWriter(loop)
    return writer
