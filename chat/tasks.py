"""Background jobs of the chat, run by ``manage.py worker``."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django_tasks import task

from chat import services


@task()
def prune_conversations() -> int:
    """Delete conversations idle longer than ``CHAT_RETENTION_DAYS`` (0 keeps them); how many."""
    if settings.CHAT_RETENTION_DAYS <= 0:
        return 0
    return services.conversations_prune(older_than=timedelta(days=settings.CHAT_RETENTION_DAYS))
