"""Who may change what in the registry beyond the model permissions: secrets and stdio programs.

Whoever points a secret somewhere can send it there. Setting or changing a secret reference, or
moving an entry that carries one (its URL, endpoint, command, header, ...), therefore needs
``registry.manage_secrets`` — not just ``change_mcpserver``. stdio servers start programs on this
host: any change to one (even its name, ``enabled`` or timeouts, or deleting it) is for superusers.

The rules compare the entry as stored with the entry as it would be saved, so they hold the same
for the REST API, the admin and any other caller of :mod:`registry.services`. They raise
:class:`netops.errors.PermissionDeniedError` (403) naming the field.
"""

from __future__ import annotations

from typing import Any, Protocol

from django.db import models

from netops.errors import PermissionDeniedError
from registry.models import MANAGE_SECRETS, LLMModel, MCPProtocol, MCPServer

# Fields holding secret references: setting or changing one needs MANAGE_SECRETS.
MCP_SECRET_FIELDS = ("auth_secret_ref", "env")
LLM_SECRET_FIELDS = ("api_key_ref",)
# Fields that decide where (or how) the secret goes: locked while the entry carries a reference.
MCP_ROUTING_FIELDS = ("protocol", "url", "health_check", "command", "args", "auth_header", "auth_scheme")
LLM_ROUTING_FIELDS = ("provider", "endpoint")


class Actor(Protocol):
    """The user making a change (a Django user, or AnonymousUser)."""

    @property
    def is_superuser(self) -> bool: ...

    def has_perm(self, perm: str, obj: Any = None) -> bool: ...


def can_manage_secrets(actor: Actor | None) -> bool:
    """True for ``None`` (netops itself: commands, migrations) and holders of the permission."""
    return actor is None or bool(actor.has_perm(MANAGE_SECRETS))


def _value(entry: models.Model | None, model: type[models.Model], name: str) -> Any:
    if entry is not None:
        return getattr(entry, name)
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field.get_default()


def _carries(entry: models.Model | None) -> bool:
    return bool(entry is not None and getattr(entry, "carries_secret_reference", False))


def secret_fields_locked(model: type[models.Model], entry: models.Model | None) -> tuple[str, ...]:
    """The fields a user without MANAGE_SECRETS may not change on ``entry`` (None: a new one)."""
    secret, routing = (
        (MCP_SECRET_FIELDS, MCP_ROUTING_FIELDS)
        if issubclass(model, MCPServer)
        else (LLM_SECRET_FIELDS, LLM_ROUTING_FIELDS)
    )
    return secret + routing if _carries(entry) else secret


def _check_secrets(
    actor: Actor | None,
    stored: models.Model | None,
    new: models.Model,
    secret_fields: tuple[str, ...],
    routing_fields: tuple[str, ...],
) -> None:
    if can_manage_secrets(actor):
        return
    model = type(new)
    for name in secret_fields:
        if _value(stored, model, name) != getattr(new, name):
            raise PermissionDeniedError(
                f"changing a secret reference needs the permission {MANAGE_SECRETS}", field=name
            )
    if stored is None or not (_carries(stored) or _carries(new)):
        return
    for name in routing_fields:
        if getattr(stored, name) != getattr(new, name):
            raise PermissionDeniedError(
                f"this entry carries a secret reference: changing where it is sent needs the "
                f"permission {MANAGE_SECRETS}",
                field=name,
            )


def _stored(model: type[models.Model], entry: models.Model) -> Any:
    return model._default_manager.filter(pk=entry.pk).first() if entry.pk is not None else None


def mcp_server_change_check(*, actor: Actor | None, server: MCPServer) -> None:
    """Refuse (403) a save of ``server`` that ``actor`` may not make; compares with the stored row."""
    stored: MCPServer | None = _stored(MCPServer, server)
    stdio_check(actor=actor, stored=stored, new=server)
    _check_secrets(actor, stored, server, MCP_SECRET_FIELDS, MCP_ROUTING_FIELDS)


def llm_model_change_check(*, actor: Actor | None, model: LLMModel) -> None:
    """Refuse (403) a save of ``model`` that ``actor`` may not make; compares with the stored row."""
    stored: LLMModel | None = _stored(LLMModel, model)
    _check_secrets(actor, stored, model, LLM_SECRET_FIELDS, LLM_ROUTING_FIELDS)


def stdio_check(*, actor: Actor | None, stored: MCPServer | None, new: MCPServer | None) -> None:
    """Refuse (403) any change to a stdio server (before or after the change) by a non-superuser."""
    if actor is None or actor.is_superuser:
        return
    if any(s is not None and s.protocol == MCPProtocol.STDIO for s in (stored, new)):
        raise PermissionDeniedError(
            "stdio servers start programs on this host: only superusers may register, change or delete them",
            field="protocol",
        )
