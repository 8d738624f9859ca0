"""``manage.py worker``: run background jobs — queued tasks and the periodic schedule.

One command for operators: it claims queued tasks from the database (applying approved NetBox
changes, periodic health checks, expiry, pruning, crash recovery) and, in a thread beside them,
enqueues the periodic jobs when they are due. Any number of workers may run, on any machine that
reaches the database; each task runs once, each periodic run is enqueued once.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections, connection
from django.utils.crypto import get_random_string
from django_tasks_db.management.commands.db_worker import Worker

from netops.scheduling import enqueue_due

logger = logging.getLogger("netops.worker")

SCHEDULER_TICK = 1.0


class Command(BaseCommand):
    help = "Run queued background jobs and the periodic schedule (several workers may run at once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=float, default=0.5, help="Seconds between polls when idle.")
        parser.add_argument("--batch", action="store_true", help="Run what is queued now, then exit.")
        parser.add_argument("--no-schedule", action="store_true", help="Do not enqueue periodic jobs.")
        parser.add_argument("--worker-id", default="", help="Unique id of this worker (default: generated).")
        parser.add_argument(
            "--queue",
            default="*",
            help="Queues to take jobs from, comma-separated (default: all: default,changes).",
        )

    def handle(
        self,
        *args: Any,
        interval: float,
        batch: bool,
        no_schedule: bool,
        worker_id: str,
        queue: str,
        **options: Any,
    ) -> None:
        worker_id = worker_id or f"worker-{get_random_string(12)}"
        stop = threading.Event()
        if not no_schedule and not batch:
            threading.Thread(target=_schedule, args=(stop,), name="netops-scheduler", daemon=True).start()
        worker = Worker(
            queue_names=[name.strip() for name in queue.split(",") if name.strip()] or ["*"],
            interval=interval,
            batch=batch,
            backend_name="default",
            startup_delay=False,
            max_tasks=None,
            worker_id=worker_id[:64],
            excluded_queue_names=[],
        )
        logger.info("worker started", extra={"worker_id": worker_id, "schedule": not (no_schedule or batch)})
        if not batch:
            worker.configure_signals()
        try:
            worker.run()
        finally:
            stop.set()


def _schedule(stop: threading.Event) -> None:
    """Enqueue due periodic jobs every second until the worker stops; a failure is logged, not fatal."""
    while not stop.wait(SCHEDULER_TICK):
        try:
            close_old_connections()
            enqueue_due()
        except Exception:
            logger.exception("periodic schedule tick failed")
        finally:
            connection.close()
