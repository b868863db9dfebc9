"""Live status: one listener per web process (per event loop) fanning out to its streams.

Every change a viewer sees moves `Generation.version` in a database trigger (migration
0007). Why a trigger: generations are written by a dozen functions, several of them with
`QuerySet.update()`, which runs no model code; a trigger covers every writer, present and
future, in the same transaction as the change, so there is exactly one mechanism and a
version can never lag behind what a reader sees.

How a web process learns about a change:
- **PostgreSQL**: the trigger sends `NOTIFY stefna_generation, '<id>:<version>'`, which
  PostgreSQL delivers at commit (never for a rolled-back change) to every listening
  process. The first stream in an event loop starts one task holding one autocommit
  psycopg `AsyncConnection` with `LISTEN stefna_generation`; each notification wakes the
  streams watching that generation. This is used with or without `REDIS_URL`: the trigger
  cannot publish to Redis, and publishing from Python would need a hook in every writer
  (a second mechanism, and one a `QuerySet.update()` would bypass), while NOTIFY already
  reaches every web process through the database they all share.
- **SQLite** (no NOTIFY; a single-machine development database) and **whenever the
  listener is down** (a database restart, or a keep-alive unanswered within
  LIVE_LISTENER_TIMEOUT_SECONDS; it reconnects with a growing delay): one task per
  event loop reads the versions of every watched generation in one indexed query every
  `LIVE_POLL_SECONDS` and wakes the streams whose version moved.

Streams wait on an `asyncio.Event`: a waiting stream holds no thread and no database
connection. The database reads (the poll, a stream's snapshot) run on the one shared
status thread of `status_thread.run_on_status_connection`, which keeps one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import weakref
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from stefna.db import listen_params

from . import status_reads, status_thread

logger = logging.getLogger("generation.live")

CHANNEL = "stefna_generation"


class Watch:
    """One stream's interest in one generation: `wait()` returns when its version moved
    (or when the hub cannot tell, after a reconnect), `version` is the newest known."""

    def __init__(self, generation_id: str, *, ending: bool = False) -> None:
        self.generation_id = generation_id
        self.version: int | None = None
        # The process is stopping: the stream ends instead of waiting (see `end_streams`).
        self.ending = ending
        self._event = asyncio.Event()

    def notify(self, version: int | None) -> None:
        # None: the hub cannot tell (a reconnect, a row gone): the stream must look again.
        self.version = None if version is None else max(version, self.version or 0)
        self._event.set()

    def end(self) -> None:
        self.ending = True
        self._event.set()

    async def wait(self, timeout: float) -> bool:
        """True when woken, False when the timeout passed first."""
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        self._event.clear()
        return True


class Hub:
    """The watchers of one event loop, and the task that feeds them."""

    def __init__(self) -> None:
        self.watches: dict[str, set[Watch]] = {}
        self.listening = False  # a LISTEN connection is up: no polling needed
        self.ending = False  # the process is stopping: streams end, new ones too
        self._known: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    @contextlib.contextmanager
    def watch(self, generation_id: uuid.UUID | str, *, version: int) -> Iterator[Watch]:
        key = str(generation_id)
        watch = Watch(key, ending=self.ending)
        self.watches.setdefault(key, set()).add(watch)
        self._known.setdefault(key, version)
        self._ensure_running()
        try:
            yield watch
        finally:
            watchers = self.watches.get(key, set())
            watchers.discard(watch)
            if not watchers:
                self.watches.pop(key, None)
                self._known.pop(key, None)

    def dispatch(self, generation_id: str, version: int | None) -> None:
        watchers = self.watches.get(generation_id)
        if not watchers:
            # Every process hears of every change; remembering the versions of generations
            # none of its streams watches would grow for as long as the process lives.
            return
        if version is not None:
            if version <= self._known.get(generation_id, 0):
                return  # already told (a poll and a notification can both report one change)
            self._known[generation_id] = version
        for watch in list(watchers):
            watch.notify(version)

    def wake_all(self) -> None:
        """After the listener (re)connects, changes made while it was down are unknown."""
        for key in list(self.watches):
            for watch in list(self.watches.get(key, ())):
                watch.notify(None)

    def end_streams(self) -> None:
        """The process is stopping: wake every stream to end (see stefna/asgi_worker.py)."""
        self.ending = True
        for key in list(self.watches):
            for watch in list(self.watches.get(key, ())):
                watch.end()

    def _ensure_running(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="generation-live")

    async def _run(self) -> None:
        if connections[DEFAULT_DB_ALIAS].vendor == "postgresql":
            # The poller lives as long as the listener: an outage can begin, or outlast
            # the idle time, while nobody watches, and a stream that opens during it must
            # be polled for (the listener only ends, and this with it, once it is up and idle).
            poller = asyncio.create_task(self._poll_while_not_listening(ends_when_idle=False))
            try:
                await self._listen()
            finally:
                poller.cancel()
        else:
            await self._poll_while_not_listening(ends_when_idle=True)

    async def _listen(self) -> None:
        """LISTEN until no stream has watched for LIVE_LISTENER_IDLE_SECONDS; reconnect after
        an error with a growing delay (the poller covers the gap)."""
        import psycopg  # PostgreSQL only

        delay = 0.5
        idle_since: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    # Named, so an operator can tell it in pg_stat_activity (one per web process).
                    **listen_params(application_name="stefna-live"),
                    autocommit=True,
                ) as conn:
                    try:
                        await self._query(conn.pgconn, loop, f"LISTEN {CHANNEL}")
                        self.listening, delay = True, 0.5
                        self.wake_all()
                        while True:
                            await self._read_notifications(conn.pgconn, loop)
                            if self.watches:
                                idle_since = None
                            elif idle_since is None:
                                idle_since = loop.time()
                            elif loop.time() - idle_since >= settings.LIVE_LISTENER_IDLE_SECONDS:
                                return
                            # A cheap round trip, so a dead connection is noticed while idle too.
                            await self._query(conn.pgconn, loop, "SELECT 1")
                    finally:
                        # Closed here, at once: leaving the `async with` after an error would
                        # first try a rollback, and wait for ever on a connection that hangs.
                        await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database restart, a dropped connection, a refused connect
                logger.warning("live status: LISTEN connection lost; polling until it is back", exc_info=True)
            finally:
                self.listening = False
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    async def _query(self, pgconn: Any, loop: asyncio.AbstractEventLoop, sql: str) -> None:
        """Run `sql` (LISTEN, the keep-alive) on the listener's connection, answered within
        LIVE_LISTENER_TIMEOUT_SECONDS or TimeoutError (the connection is given up).

        Straight on libpq, like `_read_notifications`, because of that bound: a connection
        that hangs (a server gone without a RST, a network that drops everything) would
        hold the listener for ever while its streams count on it and nothing polls for
        them, and cancelling psycopg's `execute` makes psycopg send a cancel request and
        wait for the answer to it, on that same dead connection, for up to 10 s. The
        notifications read with the answer are dispatched here.
        """
        import psycopg  # PostgreSQL only
        from psycopg.pq import ExecStatus

        readable = asyncio.Event()
        socket = pgconn.socket
        loop.add_reader(socket, readable.set)
        try:
            async with asyncio.timeout(settings.LIVE_LISTENER_TIMEOUT_SECONDS):
                pgconn.send_query(sql.encode())
                while pgconn.flush():  # a few bytes: sent at once unless the socket is full
                    await asyncio.sleep(0.01)
                while True:
                    pgconn.consume_input()  # raises OperationalError when the connection is gone
                    self._dispatch_notifications(pgconn)
                    if pgconn.is_busy():
                        await readable.wait()
                        readable.clear()
                        continue
                    if (result := pgconn.get_result()) is None:
                        break  # the answer is complete
                    if result.status not in (ExecStatus.COMMAND_OK, ExecStatus.TUPLES_OK):
                        raise psycopg.OperationalError(result.error_message.decode(errors="replace"))
            # Anything that came in with the answer's end (libpq parsed it, the socket holds
            # nothing more to wake `_read_notifications`).
            self._dispatch_notifications(pgconn)
        finally:
            loop.remove_reader(socket)

    def _dispatch_notifications(self, pgconn: Any) -> None:
        while (notification := pgconn.notifies()) is not None:
            self._dispatch_payload(notification.extra.decode())

    async def _read_notifications(self, pgconn: Any, loop: asyncio.AbstractEventLoop) -> None:
        """Dispatch notifications as they arrive, for LIVE_HEARTBEAT_SECONDS.

        Read straight from libpq with the socket watched the whole time: every version
        bump is a notification to every web process (a few hundred a second under load),
        and psycopg's `notifies()` re-arms the event loop's watch and takes a lock for
        each read, which cost about a tenth of a web process's CPU at the crowd bench's
        load. Here one wake-up drains all that is waiting. psycopg is not using the
        connection at all after connecting (`_query` runs LISTEN and the keep-alive).
        """
        readable = asyncio.Event()
        socket = pgconn.socket
        loop.add_reader(socket, readable.set)
        try:
            deadline = loop.time() + settings.LIVE_HEARTBEAT_SECONDS
            while (remaining := deadline - loop.time()) > 0:
                try:
                    await asyncio.wait_for(readable.wait(), remaining)
                except TimeoutError:
                    return
                readable.clear()
                pgconn.consume_input()  # raises OperationalError when the connection is gone
                self._dispatch_notifications(pgconn)
        finally:
            loop.remove_reader(socket)

    def _dispatch_payload(self, payload: str) -> None:
        generation_id, _, version = payload.partition(":")
        self.dispatch(generation_id, int(version) if version.isdigit() else None)

    async def _poll_while_not_listening(self, *, ends_when_idle: bool) -> None:
        """One query for every watched generation per tick, while the listener is down
        (always, on SQLite). With `ends_when_idle` (SQLite, where it is the only feed) it
        ends when nothing has been watched for LIVE_LISTENER_IDLE_SECONDS; on PostgreSQL
        it is cancelled with the listener."""
        loop = asyncio.get_running_loop()
        idle_since: float | None = None
        while True:
            await asyncio.sleep(settings.LIVE_POLL_SECONDS)
            if not self.watches:
                idle_since = idle_since or loop.time()
                if ends_when_idle and loop.time() - idle_since >= settings.LIVE_LISTENER_IDLE_SECONDS:
                    return
                continue
            idle_since = None
            if self.listening:
                continue
            ids = list(self.watches)
            try:
                versions = await status_thread.run_on_status_connection(
                    status_reads.generation_versions, generation_ids=ids
                )
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is down: streams keep waiting, heartbeats go on
                logger.warning("live status: polling versions failed", exc_info=True)
                continue
            for key in ids:
                if key not in versions:
                    self.dispatch(key, None)  # gone (deleted): its streams notice and end
                else:
                    self.dispatch(key, versions[key])


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def end_streams() -> None:
    """End every live stream of this event loop, now and from now on: the web process is
    shutting down. Each client reconnects with `Last-Event-ID` to a serving process."""
    hub().end_streams()


def hub() -> Hub:
    """This event loop's hub (one per web process under uvicorn), made on first use."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = Hub()
    return found
