"""Session engines: Django's, with the signed-in read as one fixed statement.

Every signed-in request reads its session row. Through the ORM that read built and
compiled a query each time, which cost more CPU than the round trip (figures in
bench/README.md); the statement below is written once. Everything
else (saving, rotating, expiry, the cache in front with REDIS_URL) is Django's own.

SESSION_ENGINE is `stefna.sessions.db`, or `stefna.sessions.cached_db` with Redis.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.conf import settings
from django.db import connections, router
from django.utils import timezone


class FixedStatementRead:
    """`_get_session_from_db` for Django's database session stores, same answer as
    theirs: the live (unexpired) row for this key, or None, forgetting the key."""

    model: Any
    session_key: str | None
    _session_key: str | None

    def _get_session_from_db(self) -> Any:
        model = self.model
        alias = router.db_for_read(model)
        connection = connections[alias]
        with connection.cursor() as cursor:
            cursor.execute(_read_statement(alias, model._meta.db_table), [self.session_key, timezone.now()])
            row = cursor.fetchone()
        if row is None:
            self._session_key = None
            return None
        session_data, expire_date = row
        if settings.USE_TZ and timezone.is_naive(expire_date):
            # SQLite hands back naive datetimes; the ORM's converter would make them aware
            # in the connection's zone (UTC), and cached_db compares it with an aware one.
            expire_date = timezone.make_aware(expire_date, connection.timezone)
        return model(session_key=self.session_key, session_data=session_data, expire_date=expire_date)


@cache
def _read_statement(alias: str, table: str) -> str:
    quote = connections[alias].ops.quote_name
    # Only the model's own table and column names, quoted; the key is a parameter.
    return (
        f"SELECT {quote('session_data')}, {quote('expire_date')} FROM {quote(table)}"  # noqa: S608
        f" WHERE {quote('session_key')} = %s AND {quote('expire_date')} > %s"
    )
