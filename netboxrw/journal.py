"""The apply journal in the database, and rolling a crashed apply back from it.

:class:`DatabaseJournal` is the executor's :class:`~netboxrw.executor.Journal`: every step is a
committed row *before* it is sent (``intent``) and again once NetBox answered (``written``, with
NetBox's ids). A worker killed at any point leaves at most one step whose outcome is unknown.
:func:`rollback` hands the steps to the executor (only the executor writes to NetBox), marking
each one ``undone`` as soon as it is, so a recovery that is itself interrupted resumes there.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings
from django.utils import timezone

from netboxrw.client import NetBoxClient
from netboxrw.executor import JournalRecord, rollback_journal
from netboxrw.models import ChangeJournalStep, ChangeRequest, JournalState
from netboxrw.plans import Operation

logger = logging.getLogger(__name__)

PROGRESS_EVERY = 1.0  # seconds between progress saves and announcements
_OPERATION_FIELDS = ("action", "endpoint", "display", "id", "ref", "lookup", "before")


def _operation_record(op: Operation) -> dict[str, Any]:
    return {name: getattr(op, name) for name in _OPERATION_FIELDS}


class DatabaseJournal:
    """Journal of one change request's apply, written by the worker ``worker_id``."""

    def __init__(self, change: ChangeRequest, worker_id: str, on_progress: Any = None) -> None:
        self.change = change
        self.worker_id = worker_id
        self.on_progress = on_progress
        self._last_progress = 0.0

    def before_write(self, seq: int, batch: list[Operation], payload: list[dict[str, Any]]) -> None:
        ChangeJournalStep.objects.create(
            change_request=self.change,
            seq=seq,
            action=batch[0].action,
            endpoint=batch[0].endpoint,
            operations=[_operation_record(op) for op in batch],
            payload=payload,
            worker=self.worker_id,
        )

    def after_write(self, seq: int, batch: list[Operation], object_ids: list[int]) -> None:
        ChangeJournalStep.objects.filter(change_request=self.change, seq=seq).update(
            state=JournalState.WRITTEN, object_ids=object_ids, written_at=timezone.now()
        )
        pause_after = getattr(settings, "NETOPS_TEST_PAUSE_AFTER_STEP", None)
        if pause_after is not None and seq == int(pause_after):
            # Test-only pause point (never set in production): the crash-recovery tests kill the
            # worker here, between two bulk steps.
            logger.warning("test pause point reached", extra={"change_request": self.change.pk, "step": seq})
            time.sleep(3600)

    def progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done not in (0, total) and now - self._last_progress < PROGRESS_EVERY:
            return
        self._last_progress = now
        ChangeRequest.objects.filter(pk=self.change.pk).update(progress_done=done, progress_total=total)
        if self.on_progress is not None:
            self.on_progress(done, total)


def rollback(client: NetBoxClient, change: ChangeRequest, *, message: str) -> list[str]:
    """Undo what ``change``'s journal says may be in NetBox (see :func:`executor.rollback_journal`)."""
    steps = {step.seq: step for step in change.journal.all()}
    records = [
        JournalRecord(
            seq=step.seq,
            action=step.action,
            endpoint=step.endpoint,
            operations=list(step.operations),
            object_ids=list(step.object_ids),
            state=step.state,
        )
        for step in steps.values()
    ]

    def undone(seq: int) -> None:
        ChangeJournalStep.objects.filter(pk=steps[seq].pk).update(state=JournalState.UNDONE)

    return rollback_journal(client, records, message=message, on_undone=undone)
