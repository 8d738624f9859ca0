"""``manage.py create_api_key --user U --level L [--name N] [--rate-limit PER_HOUR] [--expires DAYS]``.

Prints the new key once and nothing else on stdout, so automation can capture it
(``KEY=$(manage.py create_api_key --user ci --level read_only)``); messages go to stderr.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.core.management.base import BaseCommand, CommandError, CommandParser

from netops.errors import ApplicationError
from registry.key_policy import api_key_policy_check
from registry.keys import api_key_create
from registry.models import PermissionLevel


class Command(BaseCommand):
    help = "Create an API key for the tool gateway and /mcp; prints the key once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, help="Owner's user name.")
        parser.add_argument("--level", required=True, choices=PermissionLevel.values)
        parser.add_argument("--name", default="", help="A label (50 characters).")
        parser.add_argument("--rate-limit", type=int, dest="rate_limit", help="Requests per hour.")
        parser.add_argument("--expires", type=int, metavar="DAYS", help="Expire after DAYS days.")

    def handle(
        self,
        *args: Any,
        user: str,
        level: str,
        name: str,
        rate_limit: int | None,
        expires: int | None,
        **options: Any,
    ) -> None:
        owner = User.objects.filter(username=user, is_active=True).first()
        if owner is None:
            raise CommandError(f"no active user named {user!r}")
        try:
            api_key_policy_check(owner=owner, level=level, rate_limit=rate_limit)
            key, plain = api_key_create(
                owner=owner,
                name=name or f"{user} {level}",
                level=level,
                rate_limit=rate_limit,
                expires_in_days=expires,
            )
        except ApplicationError as exc:
            raise CommandError(str(exc)) from None
        self.stderr.write(
            f"created key {key.prefix} ({key.level}, {key.rate_limit}/h) for {user}; it is shown only now"
        )
        self.stdout.write(plain)
