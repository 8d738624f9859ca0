"""Per-key rate limits in fixed hourly windows, counted in the Django cache.

With ``REDIS_URL`` the cache is Redis, so every daphne process counts against the same number
(``INCR`` is atomic); without it, local memory (one process). The window is the clock hour, so
``X-RateLimit-Reset`` is the same for every process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.core.cache import cache

WINDOW_SECONDS = 3600


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


def hit(key_id: str, limit: int) -> RateState:
    """Count one request of ``key_id``; the request number ``limit`` is allowed, ``limit + 1`` is not."""
    now = int(time.time())
    window = now - now % WINDOW_SECONDS
    counter = f"netops:rate:{key_id}:{window}"
    cache.add(counter, 0, timeout=WINDOW_SECONDS + 60)
    try:
        count = cache.incr(counter)
    except ValueError:  # expired between add and incr
        cache.add(counter, 1, timeout=WINDOW_SECONDS + 60)
        count = 1
    return RateState(
        limit=limit, remaining=max(0, limit - count), reset=window + WINDOW_SECONDS, allowed=count <= limit
    )
