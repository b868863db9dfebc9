"""Django's cached database sessions (Redis in front), read from the database with one
fixed statement on a cache miss (see the package)."""

from django.contrib.sessions.backends import cached_db

from . import FixedStatementRead


class SessionStore(FixedStatementRead, cached_db.SessionStore):
    pass
