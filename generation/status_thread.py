"""The status thread: reads for async code that waits on generations, on one thread and
one database connection per web process.

The studio's wait (`POST /api/generate-image`) and the live status streams read a
generation several times a job from the event loop. Each read through asgiref would take
a thread and a connection of its own; here every such read of the process runs on one
thread that keeps one connection open between reads, so a hundred waiting clients cost
one connection, not a hundred (and no reconnect per read).
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections
from django.db.backends.base.base import BaseDatabaseWrapper

# Every waiting client's status polls in this process run on this one thread, so on one
# database connection that stays open between polls: a hundred waiting clients cost one
# connection, not a hundred (and no reconnect per poll).
_STATUS_POLLER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="generation-status")
_poller_connections: weakref.WeakSet[BaseDatabaseWrapper] = weakref.WeakSet()


async def run_on_status_connection[ResultT](function: Callable[..., ResultT], /, **kwargs: Any) -> ResultT:
    """`function(**kwargs)` (a read) on the status poller's thread and its one connection.

    For async code that waits on generations (the studio's wait, the live status stream):
    however many clients wait, their reads share one connection instead of each holding one.
    """
    # The executor directly, in a copy of the caller's context (its request id for log
    # lines): building an asgiref SyncToAsync for each read was a few percent of a web
    # process's CPU at the crowd bench's load, where streams read several times a job.
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(
        _STATUS_POLLER, context.run, _on_a_shared_connection, function, kwargs
    )


def _on_a_shared_connection[ResultT](function: Callable[..., ResultT], kwargs: dict[str, Any]) -> ResultT:
    _poller_connections.add(connections[DEFAULT_DB_ALIAS])
    try:
        return function(**kwargs)
    except DatabaseError:
        # A dropped connection (say, a database restart): discard it so the next read
        # reconnects instead of failing the same way forever.
        connection.close()
        raise


def generation_status_close_connection() -> None:
    """Close the status poller's database connection (tests; before dropping a database)."""

    def close() -> None:
        # On the poller's thread: a connection may only be closed by the thread using it.
        for poller_connection in list(_poller_connections):
            poller_connection.close()

    _STATUS_POLLER.submit(close).result()
