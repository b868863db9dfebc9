"""Django's database sessions, read with one fixed statement (see the package)."""

from django.contrib.sessions.backends import db

from . import FixedStatementRead


class SessionStore(FixedStatementRead, db.SessionStore):
    pass
