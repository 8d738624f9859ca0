"""Per-key rate limits in fixed hourly windows, counted in the Django cache.

With ``REDIS_URL`` the cache is Redis, so every daphne process counts against the same number
(``INCR`` is atomic); without it, local memory (one process). The window is the clock hour, so
``X-RateLimit-Reset`` is the same for every process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis
from django.core.cache import BaseCache, cache, caches
from django.core.cache.backends.redis import RedisCache

from netops.errors import ApplicationError

WINDOW_SECONDS = 3600


class RateLimitUnavailable(ApplicationError):
    """The shared counter (Redis) cannot be reached: refuse rather than let calls through uncounted."""

    status_code = 503
    code = "rate_limit_unavailable"


@dataclass(frozen=True)
class RateState:
    limit: int
    remaining: int
    reset: int  # epoch seconds when the window ends
    allowed: bool

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, self.reset - int(time.time())))
        return headers


def _count(counter: str) -> int:
    """The counter after one more request, in any Django cache (local memory: no round trips)."""
    cache.add(counter, 0, timeout=WINDOW_SECONDS + 60)
    try:
        return int(cache.incr(counter))
    except ValueError:  # expired between add and incr
        cache.add(counter, 1, timeout=WINDOW_SECONDS + 60)
        return 1


def _count_redis(backend: RedisCache, counter: str) -> int:
    """The counter after one more request in one round trip to Redis: ``SET 0 NX EX`` (creates the
    window's counter with its expiry, once) and ``INCR`` (atomic) in one pipeline, as Django's
    ``add`` then ``incr`` do in two; works on every Redis version."""
    key = backend.make_and_validate_key(counter)
    client = backend._cache.get_client(key, write=True)
    pipe = client.pipeline(transaction=False)
    pipe.set(key, 0, ex=WINDOW_SECONDS + 60, nx=True)
    pipe.incr(key)
    _, count = pipe.execute()
    return int(count)


def hit(key_id: str, limit: int) -> RateState:
    """Count one request of ``key_id``; the request number ``limit`` is allowed, ``limit + 1`` is not."""
    now = int(time.time())
    window = now - now % WINDOW_SECONDS
    counter = f"netops:rate:{key_id}:{window}"
    try:
        backend = cache if isinstance(cache, BaseCache) else caches["default"]  # the proxy's backend
        count = _count_redis(backend, counter) if isinstance(backend, RedisCache) else _count(counter)
    except (redis.RedisError, OSError):
        raise RateLimitUnavailable(
            "the rate-limit counter (Redis) is unreachable; try again shortly", status_code=503
        ) from None
    return RateState(
        limit=limit, remaining=max(0, limit - count), reset=window + WINDOW_SECONDS, allowed=count <= limit
    )
