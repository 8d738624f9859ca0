"""App config of the project package: registers what every process reports about the task queue."""

from __future__ import annotations

from django.apps import AppConfig


class NetopsConfig(AppConfig):
    name = "netops"
    verbose_name = "netops"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from netops import task_queue

        task_queue.register()
