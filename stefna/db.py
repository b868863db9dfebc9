"""The default database's connection parameters for a dedicated psycopg connection.

Two processes hold one connection of their own outside Django's, for PostgreSQL's
LISTEN: each web process's live-status hub (`generation/live.py`) and each worker's wake
listener (`generation/worker.py`). Both are built from Django's own settings, so
`DATABASE_URL` is the only place the server is named.
"""

from __future__ import annotations

from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

# Options of Django's PostgreSQL settings that are not libpq connection parameters.
_NOT_LIBPQ = {"pool", "server_side_binding", "isolation_level", "assume_role", "cursor_factory", "context"}


def listen_params(*, application_name: str) -> dict[str, Any]:
    """libpq parameters for psycopg.connect(): the default database, named
    `application_name` so that an operator can tell the connection in pg_stat_activity."""
    settings_dict = connections[DEFAULT_DB_ALIAS].settings_dict
    params: dict[str, Any] = {
        key: value
        for key, value in (settings_dict.get("OPTIONS") or {}).items()
        if key not in _NOT_LIBPQ and isinstance(value, str | int)
    }
    params.update(
        application_name=application_name,
        dbname=settings_dict["NAME"],
        user=settings_dict.get("USER") or None,
        password=settings_dict.get("PASSWORD") or None,
        host=settings_dict.get("HOST") or None,
        port=settings_dict.get("PORT") or None,
    )
    return {key: value for key, value in params.items() if value is not None}
