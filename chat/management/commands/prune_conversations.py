"""``manage.py prune_conversations [--days N] [--dry-run]``: apply the chat retention setting."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from chat import services
from chat.models import Conversation


class Command(BaseCommand):
    help = "Delete conversations not updated for CHAT_RETENTION_DAYS days (or --days)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, help="Override CHAT_RETENTION_DAYS.")
        parser.add_argument("--dry-run", action="store_true", help="Count, delete nothing.")

    def handle(self, *args: Any, days: int | None, dry_run: bool, **options: Any) -> None:
        days = settings.CHAT_RETENTION_DAYS if days is None else days
        if days < 0:
            raise CommandError("--days must be 0 (keep forever) or more")
        if days == 0:
            self.stdout.write("retention is 0 days: conversations are kept forever")
            return
        if dry_run:
            count = Conversation.objects.filter(updated__lt=timezone.now() - timedelta(days=days)).count()
            self.stdout.write(f"would delete {count} conversation(s) older than {days} days")
            return
        deleted = services.conversations_prune(older_than=timedelta(days=days))
        self.stdout.write(f"deleted {deleted} conversation(s) older than {days} days")
