"""Redis down: the rate limiter refuses with a clear 503 instead of a 500 or uncounted calls."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.cache import caches

from registry import ratelimit
from tests.support.processes import free_port


def test_an_unreachable_counter_is_a_clear_503(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
    monkeypatch.setattr(ratelimit, "cache", caches.create_connection("default"))
    with pytest.raises(ratelimit.RateLimitUnavailable) as raised:
        ratelimit.hit("key-1", 10)
    assert raised.value.status_code == 503 and "unreachable" in raised.value.message
