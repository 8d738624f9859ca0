"""The registry revision: one token in the database that every process compares with its cache.

Written by :func:`bump` in the transaction of any change of servers or tools (the registry
signals), read by :func:`current` once per catalog load — one indexed row instead of every
server and tool.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from registry.models import RegistryRevision

_batch = threading.local()


def current() -> str:
    """The token as this connection sees it (empty before the first change)."""
    token = RegistryRevision.objects.filter(pk=1).values_list("token", flat=True).first()
    return token or ""


def bump() -> None:
    """A new token; other processes see it when the caller's transaction commits.

    Inside :func:`batched`, only noted: the block writes one token at its end.
    """
    if getattr(_batch, "depth", 0):
        _batch.pending = True
        return
    _write()


@contextmanager
def batched() -> Iterator[None]:
    """One new token for every change made in the block (a sync saves a row per tool; each save's
    signal would otherwise rewrite the token). Use it inside the block's transaction."""
    _batch.depth = getattr(_batch, "depth", 0) + 1
    try:
        yield
    finally:
        _batch.depth -= 1
        if _batch.depth == 0 and getattr(_batch, "pending", False):
            _batch.pending = False
            _write()


def _write() -> None:
    token = uuid.uuid4().hex
    if not RegistryRevision.objects.filter(pk=1).update(token=token):
        RegistryRevision.objects.update_or_create(pk=1, defaults={"token": token})
