"""Django's cached database sessions (Redis in front), read from the database with one
fixed statement on a cache miss (see the package).

One change to Django's own: a deleted session (signed out, replaced at sign-in, its
account deleted) leaves a marker in the cache instead of nothing, and a cache miss
refills the cache only where nothing is (`add`, not `set`). Django's load reads the row
and then writes the cache; a request of the same session that read the row just before
a sign-out deleted it wrote the signed-in session back into the cache after the
sign-out's delete, and the cookie was signed in again there until the session's expiry
(the row was gone, but a cached session is never read from the database again).
"""

from collections.abc import Awaitable, Callable
from typing import Any

from django.contrib.sessions.backends import cached_db
from django.core.cache.backends.base import BaseCache

from . import FixedStatementRead

DELETED = "deleted"
# Longer than any request: the marker only has to outlive a load that read the row
# before the delete and has not written the cache yet.
DELETED_MARKER_SECONDS = 3600


class SessionStore(FixedStatementRead, cached_db.SessionStore):
    # Django's, which its type stubs do not name.
    _cache: BaseCache
    _aget_session_from_db: Callable[[], Awaitable[Any]]

    def load(self) -> dict[str, Any]:
        try:
            data = self._cache.get(self.cache_key)
        except Exception:
            data = None  # as Django's: an invalid key reads as a miss
        if data == DELETED:
            self._session_key = None  # as for a row that is gone: a save makes a new key
            return {}
        if data is not None:
            return data  # type: ignore[no-any-return]
        row = self._get_session_from_db()
        if row is None:
            return {}
        data = self.decode(row.session_data)
        # `add`: a delete that came after the row was read has left its marker.
        self._cache.add(self.cache_key, data, self.get_expiry_age(expiry=row.expire_date))
        return data  # type: ignore[no-any-return]

    async def aload(self) -> dict[str, Any]:
        try:
            data = await self._cache.aget(await self.acache_key())
        except Exception:
            data = None
        if data == DELETED:
            self._session_key = None
            return {}
        if data is not None:
            return data  # type: ignore[no-any-return]
        row = await self._aget_session_from_db()
        if row is None:
            return {}
        data = self.decode(row.session_data)
        await self._cache.aadd(await self.acache_key(), data, await self.aget_expiry_age(expiry=row.expire_date))
        return data  # type: ignore[no-any-return]

    def delete(self, session_key: str | None = None) -> None:
        super().delete(session_key)
        session_key = session_key or self.session_key
        if session_key:
            self._cache.set(self.cache_key_prefix + session_key, DELETED, DELETED_MARKER_SECONDS)

    async def adelete(self, session_key: str | None = None) -> None:
        await super().adelete(session_key)
        session_key = session_key or self.session_key
        if session_key:
            await self._cache.aset(self.cache_key_prefix + session_key, DELETED, DELETED_MARKER_SECONDS)
