"""Writes to the registry: saving models with the one-default rule, and recording health checks."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from django.db import IntegrityError, transaction
from django.utils import timezone

from netops.errors import ApplicationError, ConflictError
from netops.redaction import sanitize
from netops.secrets import SecretError, is_secret_reference, resolve_secret
from registry import revision
from registry.connections import ServerConfig
from registry.health import ProbeResult, probe_all
from registry.models import LLMModel, MCPServer, ServerStatus
from registry.secret_guard import Actor, llm_model_change_check, mcp_server_change_check, stdio_check
from registry.selectors import mcp_server_config
from registry.tool_sync import server_tools_sync

logger = logging.getLogger(__name__)

_DEFAULT_RETRIES = 5


def llm_model_save(*, model: LLMModel, actor: Actor | None = None) -> LLMModel:
    """Validate and save ``model``, keeping exactly one default model.

    ``actor`` is the user making the change (None: netops itself, e.g. a management command);
    setting the API key reference, or moving a model that has one, needs
    ``registry.manage_secrets`` (:mod:`registry.secret_guard`, 403 naming the field).

    Making a model the default unsets the previous one in the same transaction. The first model
    ever saved becomes the default. Unsetting the default directly is refused: another model must
    be made the default instead, so the agent always has one to use. Concurrent writers are
    serialised by ``_lock_llm_models``; the rare loser of a race on an empty table retries.
    """
    llm_model_change_check(actor=actor, model=model)
    # is_default is excluded from model validation: the partial unique index would reject the new
    # default before the old one is unset below; the index stays the backstop in the database.
    model.full_clean(exclude={"is_default"})
    for attempt in range(_DEFAULT_RETRIES):
        try:
            with transaction.atomic():
                _llm_model_save_once(model)
            return model
        except IntegrityError:
            if attempt == _DEFAULT_RETRIES - 1:
                raise ConflictError(
                    "another request changed the default model at the same time; retry"
                ) from None
    return model


def _lock_llm_models() -> None:
    """Lock every model row, always in primary-key order, for the rest of the transaction.

    Locking only the current default is not enough: two writers that both find no default (or
    see it move under them) each insert into the partial unique index and wait on each other's
    transaction, which PostgreSQL reports as a deadlock. The table holds a handful of rows, so
    taking them all in one fixed order is cheap and makes every default change strictly serial.
    """
    list(LLMModel.objects.select_for_update().order_by("pk").values_list("pk", flat=True))


def _llm_model_save_once(model: LLMModel) -> None:
    _lock_llm_models()
    current = list(LLMModel.objects.filter(is_default=True).exclude(pk=model.pk))
    stored_default = LLMModel.objects.filter(pk=model.pk, is_default=True).exists()
    if not model.is_default and stored_default:
        raise ApplicationError(
            "the default model cannot be unset; make another model the default instead", field="is_default"
        )
    if not current and not model.is_default:
        model.is_default = True  # the only model (or the first) is the default
    if model.is_default and current:
        LLMModel.objects.filter(pk__in=[m.pk for m in current]).update(is_default=False)
    model.save()


def llm_model_delete(*, model: LLMModel) -> None:
    """Delete ``model``; when it was the default, the most recently updated other model takes over."""
    with transaction.atomic():
        _lock_llm_models()
        was_default = LLMModel.objects.filter(pk=model.pk, is_default=True).exists()
        model.delete()
        if was_default:
            successor = LLMModel.objects.order_by("-last_updated").first()
            if successor is not None:
                successor.is_default = True
                successor.save(update_fields=["is_default"])


def mcp_server_save(*, server: MCPServer, actor: Actor | None = None) -> MCPServer:
    """Validate and save ``server``; a disabled server shows as disabled, a re-enabled one as unknown.

    ``actor`` is the user making the change (None: netops itself). Secret references and where an
    entry carrying one connects need ``registry.manage_secrets``; any change to a stdio server
    needs a superuser (:mod:`registry.secret_guard`, 403 naming the field).
    """
    mcp_server_change_check(actor=actor, server=server)
    server.full_clean()
    if not server.enabled:
        server.status = ServerStatus.DISABLED
    elif server.status == ServerStatus.DISABLED:
        server.status, server.last_result = ServerStatus.UNKNOWN, ""
    server.save()
    return server


def mcp_server_delete(*, server: MCPServer, actor: Actor | None = None) -> None:
    """Delete ``server``; a stdio server only by a superuser (it is a program run on this host)."""
    stdio_check(actor=actor, stored=server, new=None)
    server.delete()


@dataclass(frozen=True)
class HealthOutcome:
    """What one check found and what the server's settled status is now."""

    server: MCPServer
    ok: bool
    status: str
    changed: bool
    error: str
    duration_ms: float


def mcp_servers_check_health(*, servers: Iterable[MCPServer]) -> list[HealthOutcome]:
    """Check ``servers`` concurrently (each bounded by its own timeout) and record the results.

    Disabled servers are skipped. Status moves only when two consecutive checks agree, except
    from ``unknown`` where the first result settles it. A healthy check refreshes the tool cache.
    """
    targets = [s for s in servers if s.enabled]
    configs: list[ServerConfig | None] = []
    pre_errors: dict[int, str] = {}
    for index, server in enumerate(targets):
        try:
            configs.append(mcp_server_config(server))
        except SecretError as exc:
            configs.append(None)
            pre_errors[index] = str(exc)
    reachable = [c for c in configs if c is not None]
    results = iter(async_to_sync(probe_all)(reachable) if reachable else [])
    outcomes = []
    for index, (server, config) in enumerate(zip(targets, configs, strict=True)):
        result = (
            next(results)
            if config is not None
            else ProbeResult(ok=False, duration_ms=0.0, error=pre_errors[index])
        )
        outcomes.append(mcp_server_record_check(server=server, result=result))
    return outcomes


LAST_ERROR_CHARS = 2000


def _server_secrets(server: MCPServer) -> list[str]:
    """The secret values ``server`` references, resolved now; unresolvable ones are skipped."""
    values: list[str] = []
    for reference in [server.auth_secret_ref, *(server.env or {}).values()]:
        if not isinstance(reference, str) or not is_secret_reference(reference):
            continue
        try:
            value = resolve_secret(reference)
        except SecretError:
            continue
        values.append(value)
    return values


def mcp_server_record_check(*, server: MCPServer, result: ProbeResult) -> HealthOutcome:
    """Apply one probe result to ``server`` under a row lock (checks from several processes are safe)."""
    now = timezone.now()
    if not result.ok:
        observed = ServerStatus.UNHEALTHY
    else:
        observed = ServerStatus.DEGRADED if result.degraded else ServerStatus.HEALTHY
    # A remote error may quote our own request (a 401 page echoing the Authorization header, in
    # base64, padded past any cut): mask every secret netops holds and this server's own, resolved
    # now (this process may never have resolved them), and only then cut the text.
    result.error = sanitize(result.error, secrets=_server_secrets(server), limit=LAST_ERROR_CHARS)
    # One registry revision for the check: the tool rows it syncs and the server row it saves.
    with transaction.atomic(), revision.batched():
        locked = MCPServer.objects.select_for_update().get(pk=server.pk)
        previous_status = locked.status
        if locked.status in (ServerStatus.UNKNOWN, ServerStatus.DISABLED) or locked.last_result == observed:
            locked.status = observed
        locked.last_result = observed
        locked.last_checked_at = now
        locked.last_error = result.error
        fields = ["status", "last_result", "last_checked_at", "last_error", "last_updated"]
        if result.ok:
            # Rows, not a cache: new and changed tools may be held for review (registry.tool_sync).
            synced = server_tools_sync(server=locked, tools=[dict(t) for t in result.tools], now=now)
            note = "; ".join(n for n in (result.note, synced.note) if n)
            locked.health_note = sanitize(note, secrets=_server_secrets(server), limit=LAST_ERROR_CHARS)
            locked.tools_refreshed_at = now
            fields += ["tools_refreshed_at", "health_note"]
        locked.save(update_fields=fields)
    for name in fields:
        setattr(server, name, getattr(locked, name))
    changed = previous_status != locked.status
    log = logger.warning if changed and not result.ok else logger.info
    log(
        "mcp server checked",
        extra={
            "server": server.name,
            "ok": result.ok,
            "status": locked.status,
            "status_changed": changed,
            "tools": len(result.tools),
            "duration_ms": round(result.duration_ms, 1),
            "error": result.error,
        },
    )
    return HealthOutcome(
        server=server,
        ok=result.ok,
        status=locked.status,
        changed=changed,
        error=result.error,
        duration_ms=result.duration_ms,
    )
