"""Change requests: a planned NetBox change waiting for review, and its append-only audit trail.

A write tool never writes. It plans (reads live NetBox, computes the operations and a field diff)
and, when confirmed, stores the plan here as a ``pending`` request. Only an engineer other than
the requester approves it; the executor then applies exactly the stored plan, refusing if NetBox
changed since. Every state change is one :class:`ChangeEvent`.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ChangeState(models.TextChoices):
    PENDING = "pending", "Pending review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    APPLYING = "applying", "Applying"
    APPLIED = "applied", "Applied"
    FAILED = "failed", "Failed"
    CONFLICT = "conflict", "Conflict"
    EXPIRED = "expired", "Expired"


class ChangeRequest(models.Model):
    """One reviewed NetBox change: who asked, what exactly would be written, and what happened."""

    tool = models.CharField(max_length=100)
    arguments = models.JSONField(default=dict)
    plan = models.JSONField(help_text="Operations in order with field-level before/after.")
    summary = models.CharField(max_length=500)
    object_types = models.JSONField(default=list, help_text="NetBox object types the plan touches.")
    state = models.CharField(
        max_length=16, choices=ChangeState.choices, default=ChangeState.PENDING, db_index=True
    )
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="change_requests",
    )
    requested_via = models.CharField(
        max_length=200, blank=True, help_text="How it was asked: chat conversation, API key, MCP client."
    )
    conversation_id = models.UUIDField(null=True, blank=True, db_index=True)
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reviewed_changes",
    )
    review_comment = models.TextField(blank=True)
    result = models.JSONField(
        null=True, blank=True, help_text="NetBox ids and objects written, or the error."
    )
    error = models.TextField(blank=True)
    reverts = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="reverted_by"
    )
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    updated = models.DateTimeField(auto_now=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    # Applying happens in a worker (netboxrw.tasks). The worker that claims the request holds a
    # lease it renews while it writes; a lease that runs out means the worker died, and the
    # recovery job settles the request from its journal.
    claimed_by = models.CharField(max_length=64, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True, db_index=True)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    recovery_attempts = models.PositiveIntegerField(default=0)
    next_recovery_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        permissions = [("approve_changerequest", "Can approve or reject NetBox change requests")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.summary}"


class ChangeEvent(models.Model):
    """An entry of the audit trail; never updated or deleted by netops."""

    change_request = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="events")
    from_state = models.CharField(max_length=16, choices=ChangeState.choices, blank=True)
    to_state = models.CharField(max_length=16, choices=ChangeState.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=200, blank=True, help_text="User name, API key or 'system'.")
    comment = models.TextField(blank=True)
    request_id = models.CharField(max_length=64, blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"#{self.change_request_id}: {self.from_state or '-'} -> {self.to_state}"


class JournalState(models.TextChoices):
    INTENT = "intent", "About to write"
    WRITTEN = "written", "Written"
    UNDONE = "undone", "Undone"


class ChangeJournalStep(models.Model):
    """One write of an applying change, recorded before it is sent and again once NetBox answered.

    The executor writes in plan order and journals in the same order, so after a crash the steps
    say exactly what may be in NetBox: ``written`` steps with NetBox's ids and the objects' previous
    state, at most one ``intent`` step whose outcome is unknown (looked up by key on recovery).
    """

    change_request = models.ForeignKey(ChangeRequest, on_delete=models.CASCADE, related_name="journal")
    seq = models.PositiveIntegerField()
    action = models.CharField(max_length=16)  # create, update, delete
    endpoint = models.CharField(max_length=100)
    operations = models.JSONField(help_text="The plan's operations of this step (lookup, id, before).")
    payload = models.JSONField(help_text="What is sent, with references bound to ids.")
    state = models.CharField(max_length=16, choices=JournalState.choices, default=JournalState.INTENT)
    object_ids = models.JSONField(default=list, help_text="NetBox ids written, in operation order.")
    worker = models.CharField(max_length=64, blank=True)
    at = models.DateTimeField(auto_now_add=True)
    written_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["change_request", "seq"]
        constraints = [
            models.UniqueConstraint(
                fields=["change_request", "seq"], name="netboxrw_journal_one_step_per_seq"
            )
        ]

    def __str__(self) -> str:
        return f"#{self.change_request_id} step {self.seq}: {self.action} {self.endpoint} ({self.state})"
