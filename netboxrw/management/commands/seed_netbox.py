"""``manage.py seed_netbox``: demo data in NetBox (see ``netboxrw.seed``); thin: parse, run, print."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from netboxrw.client import NetBoxError
from netboxrw.config import netbox_client
from netboxrw.seed.network import REGIONS, build
from netboxrw.seed.reconcile import SeedRefused, purge, queue, seed, summary_table


class _Raw:
    """The command's stdout without its automatic line endings (progress lines redraw with ``\\r``)."""

    def __init__(self, wrapper: OutputWrapper) -> None:
        self.wrapper = wrapper

    def write(self, text: str, /) -> None:
        self.wrapper.write(text, ending="")

    def flush(self) -> None:
        self.wrapper.flush()


class Command(BaseCommand):
    help = "Seed NetBox with the demo network (idempotent), or --purge what the seeder owns."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--regions", default="", help="comma-separated subset of " + ",".join(REGIONS))
        parser.add_argument(
            "--countries",
            type=int,
            choices=range(1, 6),
            metavar="N",
            help="only the first N (1-5) countries of each region, for quick demos (same objects as the full seed)",
        )
        parser.add_argument("--dry-run", action="store_true", help="print the plan's counts, write nothing")
        parser.add_argument(
            "--via-queue",
            action="store_true",
            help="queue change requests for review instead of writing: shared objects first, then one per region",
        )
        parser.add_argument(
            "--purge",
            action="store_true",
            help="delete every object tagged netops-demo, in all regions (and nothing else)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        client = netbox_client()
        if client is None:
            raise CommandError("NetBox is not configured (NETBOX_URL, NETBOX_TOKEN)")
        regions = [r.strip().upper() for r in options["regions"].split(",") if r.strip()] or list(REGIONS)
        unknown = [r for r in regions if r not in REGIONS]
        if unknown:
            raise CommandError(f"unknown region(s) {', '.join(unknown)}; choose from {', '.join(REGIONS)}")
        try:
            if options["purge"]:
                report = purge(client, dry_run=options["dry_run"], out=_Raw(self.stdout))
                self.stdout.write(summary_table(report, ("deleted",)))
                return
            if options["via_queue"]:
                for part in queue(client, regions, options["countries"]):
                    self.stdout.write(f"{part.part}: {part.message}")
                return
            report = seed(
                client,
                build(regions, options["countries"]),
                dry_run=options["dry_run"],
                out=_Raw(self.stdout),
            )
        except SeedRefused as exc:
            raise CommandError(str(exc)) from exc
        except NetBoxError as exc:
            raise CommandError(f"{exc} (run again to resume)") from exc
        if options["dry_run"]:
            self.stdout.write("dry run: nothing written")
        self.stdout.write(summary_table(report))
