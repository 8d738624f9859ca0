"""``manage.py expire_change_requests``: expire pending requests older than CHANGE_REQUEST_TTL_HOURS."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from netboxrw.services import change_requests_expire


class Command(BaseCommand):
    help = "Expire pending NetBox change requests that waited longer than CHANGE_REQUEST_TTL_HOURS."

    def handle(self, *args: Any, **options: Any) -> None:
        count = change_requests_expire()
        self.stdout.write(
            f"expired {count} change request(s) pending for more than {settings.CHANGE_REQUEST_TTL_HOURS} h"
        )
