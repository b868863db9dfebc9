"""The test database's address, for the processes a test starts (servers, workers)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from django.db import connection


def database_url() -> str:
    """The URL of the test database pytest-django made, for processes we start."""
    settings = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{settings['NAME']}"
    credentials = quote(settings["USER"] or "")
    if settings.get("PASSWORD"):
        credentials += ":" + quote(settings["PASSWORD"])
    host = settings["HOST"] or "127.0.0.1"
    return f"postgres://{credentials}@{host}:{settings['PORT'] or 5432}/{settings['NAME']}"


# PostgreSQL only, for tests that hold a transaction open and wait until another
# connection is stuck behind it. Both read live: pg_locks is never a snapshot, and the
# list of backends pg_stat_activity shows is one, taken at its first read in a
# transaction (a connection opened after it would never be counted), so it is cleared
# before each read.


def someone_waits_for_a_lock_held_here() -> bool:
    """Whether another connection waits for a lock this connection holds."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE NOT granted AND pg_backend_pid() = ANY(pg_blocking_pids(pid)))"
        )
        return bool(cursor.fetchone()[0])


def connections_waiting_for_locks() -> int:
    """How many connections to this database wait for a lock, whoever holds it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return int(cursor.fetchone()[0])


def thread_recording(work: Callable[[], Any], into: list[Any]) -> threading.Thread:
    """A thread (not started) that runs `work` on a database connection of its own and
    appends what it returns, or the exception it raised, to `into`: a race test asserts on
    it instead of losing it in the thread. The connection is closed when it ends."""

    def run() -> None:
        try:
            into.append(work())
        except Exception as exc:
            into.append(exc)
        finally:
            connection.close()

    return threading.Thread(target=run)
