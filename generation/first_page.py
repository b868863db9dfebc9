"""The public feed's first page, kept for a moment in each process (FEED_CACHE_SECONDS).

The feed's first page is what every visitor asks for, signed in or not, and it is the same
for all of them (in their language, at their site's address): public images, newest
first. Each request built the same query and rendered or serialized the same two dozen
images (bench/README.md: a tenth of the web's CPU when the crowd bench's users glance at
the feed, a fifth of a browser user's). Within FEED_CACHE_SECONDS (default 1 s) a process
answers it again from what it made last, so a busy process makes it about once a second.

What that costs: an image made public shows up to that long later; one made private or
deleted stays listed as long, behind an address that no longer answers (its file moved,
its share page checks), so nothing private is shown. Later pages (a cursor) are never
kept: they are few, and their cursors are the visitor's to choose. Values are kept per
process only, never in the shared cache, where a read would cost what it saves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable

from django.conf import settings

_clock = time.monotonic
# Bounded by the keys: languages x site addresses x page sizes. Clearing them all when
# full keeps a host header the site answers from growing it without end.
MAX_KEPT = 64


class _Kept:
    def __init__(self) -> None:
        self._values: dict[Hashable, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def get[T](self, key: Hashable, make: Callable[[], T]) -> T:
        """`make()`, or what it gave for `key` less than FEED_CACHE_SECONDS ago."""
        seconds = settings.FEED_CACHE_SECONDS
        if seconds <= 0:
            return make()
        now = _clock()
        kept = self._values.get(key)
        if kept is not None and now - kept[0] < seconds:
            return kept[1]  # type: ignore[return-value]
        # Two threads missing at once both make it; neither waits for the other.
        value = make()
        with self._lock:
            if len(self._values) >= MAX_KEPT:
                self._values.clear()
            self._values[key] = (now, value)
        return value

    def page[T](self, key: Hashable, cursor: str | None, make: Callable[[], T]) -> T:
        """A page of the feed: the first (no cursor) as `get` keeps it, a later one made."""
        return self.get(key, make) if cursor is None else make()

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


kept = _Kept()
