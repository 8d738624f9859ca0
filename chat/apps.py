"""App config for chat: conversations with the LLM agent, streamed over websockets."""

from __future__ import annotations

from django.apps import AppConfig


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.conf import settings

        from chat import tasks
        from netops.scheduling import PeriodicJob, register_periodic

        register_periodic(
            PeriodicJob(
                "prune_conversations", tasks.prune_conversations, lambda: settings.CHAT_PRUNE_INTERVAL
            )
        )
