"""Fixed-window rate limits kept in Django's cache (Redis when REDIS_URL is set, so
every web process shares one count)."""

from __future__ import annotations

import time

from django.core.cache import cache
from django.http import HttpRequest

from stefna.errors import RateLimited


def client_ip(request: HttpRequest) -> str | None:
    """The address per-IP limits count against.

    REMOTE_ADDR only: X-Forwarded-For is whatever the client says unless a trusted
    proxy rewrites it, and trusting it would let anyone dodge the limit.
    """
    return request.META.get("REMOTE_ADDR") or None


def hit(key: str, *, limit: int, window: int, message: str | None = None) -> None:
    """Count one event under `key`; raise RateLimited once more than `limit` fall in a window."""
    now = int(time.time())
    window_start = now - now % window
    cache_key = f"rl:{key}:{window_start}"
    # add() is atomic in every backend: it only sets when the key is missing.
    cache.add(cache_key, 0, timeout=window + 1)
    try:
        count = cache.incr(cache_key)
    except ValueError:  # evicted between add and incr
        cache.set(cache_key, 1, timeout=window + 1)
        count = 1
    if count > limit:
        raise RateLimited(message, retry_after=window_start + window - now)
