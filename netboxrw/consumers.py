"""Live queue: open queue pages refresh their table when any change request is created or moves."""

from __future__ import annotations

from html import escape
from typing import Any

from channels.generic.websocket import AsyncWebsocketConsumer

from netboxrw.services import QUEUE_GROUP


class QueueConsumer(AsyncWebsocketConsumer):
    """``/ws/changes/``: a signal per change; the page reloads its table fragment with its own filters."""

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.close(code=4401)
            return
        if not await self._may_view(user):
            await self.close(code=4403)
            return
        await self.accept()
        await self.channel_layer.group_add(QUEUE_GROUP, self.channel_name)

    @staticmethod
    async def _may_view(user: Any) -> bool:
        """Reviewers only: the signals name every change; others' pages do not refresh live."""
        from channels.db import database_sync_to_async

        from netboxrw.selectors import sees_every_change

        return bool(await database_sync_to_async(sees_every_change)(user))

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(QUEUE_GROUP, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """The queue socket only listens."""

    async def change_updated(self, event: dict[str, Any]) -> None:
        change_id = int(event["id"])
        await self.send(
            text_data=f'<div id="queue-signal" hx-swap-oob="true" data-change="{change_id}" '
            f'data-state="{escape(str(event["state"]))}"></div>'
            + progress_fragment(change_id, str(event["state"]))
        )

    async def change_progress(self, event: dict[str, Any]) -> None:
        """A worker's progress on an applying change: the review page shows it as it goes."""
        await self.send(
            text_data=progress_fragment(int(event["id"]), "applying", int(event["done"]), int(event["total"]))
        )


def progress_fragment(change_id: int, state: str, done: int = 0, total: int = 0) -> str:
    """The live line of a change's review page: "applying: 1,200 of 3,000 operations", or its state."""
    text = f"applying: {done:,} of {total:,} operations" if state == "applying" and total else escape(state)
    return (
        f'<span id="change-progress-{change_id}" class="progress-line" hx-swap-oob="true" '
        f'data-state="{escape(state)}">{text}</span>'
    )
