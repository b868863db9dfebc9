"""A Redis cache that degrades instead of failing when Redis is unreachable.

Everything Stefna keeps in the cache can be recomputed (fal's webhook keys are
fetched again; rate limits count in the database, see stefna/ratelimit.py), so a
Redis outage must cost speed, never an error page. Reads answer "missing", writes
are dropped, and each failure is logged as a warning. Short socket timeouts keep a
dead Redis from holding a request for long.
"""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache.backends.redis import RedisCache

logger = logging.getLogger("stefna.cache")


def _warn(operation: str) -> None:
    logger.warning("cache %s failed: Redis is unreachable, carrying on without it", operation, exc_info=True)


class ResilientRedisCache(RedisCache):
    def get(self, key: Any, default: Any = None, version: int | None = None) -> Any:
        try:
            return super().get(key, default, version)
        except Exception:
            _warn("get")
            return default

    def get_many(self, keys: Any, version: int | None = None) -> dict[Any, Any]:
        try:
            return super().get_many(keys, version)
        except Exception:
            _warn("get_many")
            return {}

    def set(self, key: Any, value: Any, timeout: Any = None, version: int | None = None) -> None:
        try:
            super().set(key, value, timeout, version)
        except Exception:
            _warn("set")

    def add(self, key: Any, value: Any, timeout: Any = None, version: int | None = None) -> bool:
        try:
            return super().add(key, value, timeout, version)
        except Exception:
            _warn("add")
            return False

    def delete(self, key: Any, version: int | None = None) -> bool:
        try:
            return super().delete(key, version)
        except Exception:
            _warn("delete")
            return False

    def clear(self) -> None:
        try:
            super().clear()
        except Exception:
            _warn("clear")

    def ping(self) -> bool:
        """True when Redis answers; for /healthz, which must tell "down" from "empty"."""
        return bool(self._cache.get_client(write=False).ping())
