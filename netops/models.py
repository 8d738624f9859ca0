"""Project-wide data: when each periodic job is next due (shared by every worker)."""

from __future__ import annotations

from django.db import models


class ScheduledJob(models.Model):
    """The next due time of one periodic job; a worker that moves it forward runs the job once."""

    name = models.CharField(max_length=100, primary_key=True)
    next_run_at = models.DateTimeField()
    last_enqueued_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} (next {self.next_run_at:%Y-%m-%d %H:%M:%S})"
