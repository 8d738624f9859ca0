"""Checkpoints of running answers, so a refresh, a second tab or another process can re-attach.

The state of a run (text so far, tool cards, status) is saved here while it runs: in Redis (DB
``CHECKPOINT_REDIS_DB``, 2 by default) when ``REDIS_URL`` is set, so every daphne process sees it;
in local memory otherwise. Finished answers live in the database and their checkpoint is dropped.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

import redis.asyncio as aioredis
from django.conf import settings

TTL_SECONDS = 3600


class CheckpointStore(Protocol):
    async def save(self, conversation_id: str, state: dict[str, Any]) -> None: ...

    async def load(self, conversation_id: str) -> dict[str, Any] | None: ...

    async def clear(self, conversation_id: str) -> None: ...


class MemoryCheckpoints:
    """One process only: the embedded default."""

    def __init__(self) -> None:
        self._states: dict[str, str] = {}

    async def save(self, conversation_id: str, state: dict[str, Any]) -> None:
        self._states[conversation_id] = json.dumps(state, default=str)

    async def load(self, conversation_id: str) -> dict[str, Any] | None:
        raw = self._states.get(conversation_id)
        return json.loads(raw) if raw is not None else None

    async def clear(self, conversation_id: str) -> None:
        self._states.pop(conversation_id, None)


class RedisCheckpoints:
    """Shared by all processes; entries expire an hour after the last save (a crashed run's leftovers)."""

    def __init__(self, url: str, db: int) -> None:
        self._url, self._db = url, db
        self._clients: dict[int, aioredis.Redis] = {}

    def _client(self) -> aioredis.Redis:
        # redis.asyncio connections belong to one event loop; daphne has one, tests have many.
        loop = id(asyncio.get_running_loop())
        if loop not in self._clients:
            self._clients[loop] = aioredis.Redis.from_url(
                self._url, db=self._db, **settings.REDIS_CLIENT_OPTIONS
            )
        return self._clients[loop]

    @staticmethod
    def _key(conversation_id: str) -> str:
        return f"netops:run:{conversation_id}"

    async def save(self, conversation_id: str, state: dict[str, Any]) -> None:
        await self._client().set(self._key(conversation_id), json.dumps(state, default=str), ex=TTL_SECONDS)

    async def load(self, conversation_id: str) -> dict[str, Any] | None:
        raw = await self._client().get(self._key(conversation_id))
        return json.loads(raw) if raw is not None else None

    async def clear(self, conversation_id: str) -> None:
        await self._client().delete(self._key(conversation_id))


_store: CheckpointStore | None = None
_store_config: tuple[str, int] | None = None


def checkpoint_store() -> CheckpointStore:
    """The store for the current settings (rebuilt when the settings change, as in tests)."""
    global _store, _store_config
    config = (settings.REDIS_URL, settings.CHECKPOINT_REDIS_DB)
    if _store is None or config != _store_config:
        _store = RedisCheckpoints(*config) if config[0] else MemoryCheckpoints()
        _store_config = config
    return _store
