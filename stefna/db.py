"""Connection helpers for the default database.

`listen_params`: the parameters for a dedicated psycopg connection. Two processes hold one
connection of their own outside Django's, for PostgreSQL's LISTEN: each web process's
live-status hub (`generation/live.py`) and each worker's wake listener
(`generation/worker.py`). Both are built from Django's own settings, so
`DATABASE_URL` is the only place the server is named.

`close_old_connections_unless_in_transaction`: the pipeline's clean-up after an error.

`release_request_connection`: a request that goes on to wait (an event stream, the
studio's wait for its image) hands its connection back first.
"""

from __future__ import annotations

from typing import Any

from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections

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


def close_old_connections_unless_in_transaction() -> None:
    """Django's `close_old_connections` (drop a connection an error broke, or one past its
    age), except inside a transaction. The pipeline's threads are never in one when they
    call this; its tests run the same code in the test's thread and transaction, which
    Django would otherwise close under them."""
    if not connections[DEFAULT_DB_ALIAS].in_atomic_block:
        close_old_connections()


def release_request_connection() -> None:
    """Close the request thread's connection (with the pool, hand it back).

    A request's thread holds its database connection until the request ends. A client
    that waits up to a minute must not keep one open meanwhile (a hundred waiting clients
    would be a hundred PostgreSQL backends); the waits read on the shared status thread.
    Never inside a transaction (there is none here in production)."""
    connection = connections[DEFAULT_DB_ALIAS]
    if not connection.in_atomic_block:
        connection.close()
