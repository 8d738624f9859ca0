"""Registry signal handlers: a server edited, disabled or deleted loses its kept MCP session; any
change of a server or a tool gives the registry a new revision (every process reloads its catalog)."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from registry import revision
from registry.models import MCPServer, Tool

# What decides where and how a session connects; saving only health fields keeps the session.
CONNECTION_FIELDS = frozenset(
    {"name", "protocol", "url", "command", "args", "env", "auth_header", "auth_scheme", "auth_secret_ref",
     "connect_timeout", "enabled"}
)  # fmt: skip


def _close_session(sender: type[MCPServer], instance: MCPServer, **kwargs: Any) -> None:
    # After commit: a rolled-back edit keeps the session. Another process notices the change on
    # its next call (the session's configuration fingerprint differs) or closes it when idle.
    from registry.sessions import pool

    update_fields = kwargs.get("update_fields")
    if update_fields is not None and not CONNECTION_FIELDS & set(update_fields):
        return
    name = instance.name
    transaction.on_commit(lambda: pool().close(name))


def _new_revision(sender: type[MCPServer | Tool], **kwargs: Any) -> None:
    # In the change's own transaction: it becomes visible to other processes with the change.
    revision.bump()


def connect() -> None:
    post_save.connect(_close_session, sender=MCPServer, dispatch_uid="registry.close_session.save")
    post_delete.connect(_close_session, sender=MCPServer, dispatch_uid="registry.close_session.delete")
    for model in (MCPServer, Tool):
        for signal, kind in ((post_save, "save"), (post_delete, "delete")):
            signal.connect(
                _new_revision, sender=model, dispatch_uid=f"registry.revision.{model.__name__}.{kind}"
            )
