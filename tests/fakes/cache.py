"""A Redis cache whose writes a test can interleave with (Django's own RedisCache, with
a hook), for races between requests sharing a cached session.

    before_write = None     called with the cache key (as the caller named it) before
                            each `set` or `add` reaches Redis; a test sets it to run
                            another request at exactly that moment (reset it inside).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from django.core.cache.backends.redis import RedisCache


class HookedRedisCache(RedisCache):
    before_write: ClassVar[Callable[[str], None] | None] = None

    def _before_write(self, key: Any) -> None:
        hook = type(self).before_write
        if hook is not None:
            hook(str(key))

    def set(self, key: Any, value: Any, timeout: Any = None, version: int | None = None) -> None:
        self._before_write(key)
        super().set(key, value, timeout, version)

    def add(self, key: Any, value: Any, timeout: Any = None, version: int | None = None) -> bool:
        self._before_write(key)
        return super().add(key, value, timeout, version)
