"""The registry revision: one token in the database that every process compares with its cache.

Written by :func:`bump` in the transaction of any change of servers or tools (the registry
signals), read by :func:`current` once per catalog load — one indexed row instead of every
server and tool.
"""

from __future__ import annotations

import uuid

from registry.models import RegistryRevision


def current() -> str:
    """The token as this connection sees it (empty before the first change)."""
    token = RegistryRevision.objects.filter(pk=1).values_list("token", flat=True).first()
    return token or ""


def bump() -> None:
    """A new token; other processes see it when the caller's transaction commits."""
    token = uuid.uuid4().hex
    if not RegistryRevision.objects.filter(pk=1).update(token=token):
        RegistryRevision.objects.update_or_create(pk=1, defaults={"token": token})
