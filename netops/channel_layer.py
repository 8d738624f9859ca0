"""The Redis channel layer, made to outlive a Redis restart.

channels_redis raises from ``receive`` when Redis goes away, and Channels' consumers let that
exception end the websocket (1011); a restarted Redis also holds none of the group memberships
that were made before (Redis keeps nothing on disk here). This layer retries a failed receive
with backoff and, once Redis answers again, re-joins every group the channel had joined in this
process, so sockets and run-control tasks carry on without a restart of daphne.

Group sends are retried for a bounded time, then raise: a caller that cannot tell its peers is
told so (the run's checkpoint flush logs and carries on; a stop request reports an error frame).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

import redis
from channels_redis.core import RedisChannelLayer

logger = logging.getLogger(__name__)

#: What an outage of Redis raises from redis-py (its TimeoutError is not the built-in one).
REDIS_OUTAGE = (redis.RedisError, OSError)


class ResilientRedisChannelLayer(RedisChannelLayer):
    """:class:`RedisChannelLayer` whose receive survives Redis restarts and whose groups come back."""

    def __init__(
        self, *args: Any, reconnect_max_delay: float = 5.0, send_retry_seconds: float = 3.0, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.reconnect_max_delay = reconnect_max_delay
        self.send_retry_seconds = send_retry_seconds
        self._memberships: defaultdict[str, set[str]] = defaultdict(set)

    async def group_add(self, group: str, channel: str) -> None:
        # Remembered before the call: a membership whose add failed is made again on reconnect.
        self._memberships[channel].add(group)
        await super().group_add(group, channel)

    async def group_discard(self, group: str, channel: str) -> None:
        groups = self._memberships.get(channel)
        if groups is not None:
            groups.discard(group)
            if not groups:
                del self._memberships[channel]
        await super().group_discard(group, channel)

    async def receive(self, channel: str) -> dict[str, Any]:
        delay = 0.2
        while True:
            try:
                message: dict[str, Any] = await super().receive(channel)
                return message
            except REDIS_OUTAGE as exc:
                logger.warning(
                    "channel layer receive failed (%s); retrying in %.1f s", type(exc).__name__, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.reconnect_max_delay)
                await self._rejoin(channel)

    async def _rejoin(self, channel: str) -> None:
        for group in tuple(self._memberships.get(channel, ())):
            try:
                await super().group_add(group, channel)
            except REDIS_OUTAGE:
                return  # still down: the next failed receive tries again

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        deadline = time.monotonic() + self.send_retry_seconds
        delay = 0.1
        while True:
            try:
                await super().group_send(group, message)
                return
            except REDIS_OUTAGE:
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
