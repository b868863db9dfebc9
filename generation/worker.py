"""The worker's poller: the loop and the thread pools that drive the pipeline.

`manage.py db_worker` runs django-tasks-db's worker in its main thread and this
poller in a second one. Each round it:

- claims due generations (`services.generation_claim_due`): waiting ones whose turn
  has come, in fair order within FAL_MAX_CONCURRENT (services/schedule.py), and running
  ones whose next check is due (a conditional UPDATE, so several workers never take the
  same job), and moves each on
  (`services.generation_poll_batch`) on a pool of PIPELINE_THREADS threads: start
  queued ones, check fal's status, copy results, fall over. A thread spends one short
  HTTP call per job, never a wait for a job to finish;
- records the jobs finished since the last round together (`services.generations_finish`);
- once a second, claims images whose copy is due again (`services.media_persist_due`)
  and retries them;
- every few seconds, claims storage work owed and due again: moves of images off a
  name that was public, removals of objects no row points to (`services.media_moves_due`,
  `services.stored_removals_due`), and retries them on the pool;
- every few seconds writes the WorkerHeartbeat row /healthz reads, every half minute
  runs the sweeper (`services.generation_sweep`), and hourly prunes finished task
  results and stale heartbeats (`services.upkeep_prune`).

Between rounds it rests until the next check is due, at most a tick. On PostgreSQL a
third thread (`WakeListener`) LISTENs for `services.workers_wake`, which the web sends
when a job becomes due there (a new generation, fal's webhook, a cancel that frees a
place at fal), and wakes the poller at once; the tick is what remains when it is down
(a connection that hangs counts as down once its keep-alive goes unanswered).

Everything it does is a service call; only the threads, the pacing and the database
connections of the pool threads are this module's.
"""

from __future__ import annotations

import logging
import math
import select
import threading
import time
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections
from django.utils import timezone

from credits.tasks import purchase_upkeep_due as credits_upkeep
from stefna.db import close_old_connections_unless_in_transaction, listen_params

from . import selectors, services

logger = logging.getLogger("generation.worker")

HEARTBEAT_SECONDS = 5.0
BATCH = 200
SWEEP_SECONDS = 30.0
PRUNE_SECONDS = 3600.0
PERSIST_BATCH = 20
# How often the poller looks for images whose copy is due again. Retries are at least
# MEDIA_PERSIST_RETRY_SECONDS (15 s) apart, so looking every round (10-20 rounds a second
# at the crowd bench's 100 users, each look a query in a transaction of its own) bought
# nothing.
PERSIST_CHECK_SECONDS = 1.0
# Owed storage work (services/revoke.py) is retried a minute apart at the least, so a
# look every few seconds is prompt enough; its calls run on the pool, never on the
# poller's thread, since they wait for Cloudinary exactly when it is slow.
STORAGE_BATCH = 20
STORAGE_CHECK_SECONDS = 5.0
CONNECTION_CHECK_SECONDS = 30.0
# The longest the poller rests between rounds: how late it may notice a new job, a
# free slot or a job a webhook made due (a check due sooner wakes it sooner), unless
# the wake listener tells it at once.
IDLE_TICK_SECONDS = 0.1
# The tick while the wake listener is up: new jobs and webhooks wake the poller anyway,
# so an idle worker makes two rounds a second instead of ten.
LISTENING_TICK_SECONDS = 0.5
# How often the wake listener makes a round trip while nothing arrives, so that a
# connection the server dropped is noticed (and the tick covers the gap meanwhile).
WAKE_HEARTBEAT_SECONDS = 30.0


class Poller:
    def __init__(self, *, worker_id: str, threads: int | None = None) -> None:
        self.worker_id = worker_id
        self.threads = max(1, threads or settings.PIPELINE_THREADS)
        self.started_at = timezone.now()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._in_flight: set[Future[Any]] = set()
        self._finished: list[services.Finished] = []  # jobs fal finished, images copied, to record together
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.capacity = self.threads * 2  # a little queued work per thread keeps them all busy
        self._next_heartbeat = 0.0
        self._next_sweep = time.monotonic() + 5
        self._next_prune = time.monotonic() + 60
        self._next_persist = 0.0
        self._next_storage = 0.0
        self._listener: WakeListener | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="stefna-poller", daemon=True)
        self._thread.start()
        if connections[DEFAULT_DB_ALIAS].vendor == "postgresql":
            self._listener = WakeListener(wake=self._wake, stop=self._stop)
            self._listener.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._listener is not None:
            self._listener.join(timeout)

    def _done(self, future: Future[Any]) -> None:
        result = None if future.cancelled() or future.exception() else future.result()
        with self._lock:
            self._in_flight.discard(future)
            if isinstance(result, services.Finished):
                self._finished.append(result)
        self._wake.set()

    def _record_finished(self) -> None:
        """Record the jobs finished since the last round, all in one transaction."""
        with self._lock:
            finished, self._finished = self._finished, []
        services.generations_finish(finished=finished)

    def _track(self, future: Future[Any]) -> None:
        with self._lock:
            self._in_flight.add(future)
        future.add_done_callback(self._done)

    def run(self) -> None:
        tick = max(0.02, min(IDLE_TICK_SECONDS, settings.FAL_POLL_INTERVAL_SECONDS / 2))
        with ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="stefna-pipeline") as executor:
            pool = ConnectionCaringExecutor(executor)
            while not self._stop.is_set():
                claimed, asked = 0, 0
                try:
                    claimed, asked = self._round(pool)
                except Exception:
                    logger.exception("poller round failed")
                    close_old_connections()
                # More may be due right away when the round filled up; otherwise rest
                # until the next check is due, at most a tick (new and waiting jobs, and
                # jobs a webhook made due, are found by the next round).
                self._wake.clear()
                if not claimed or claimed < asked:
                    listening = self._listener is not None and self._listener.listening.is_set()
                    self._wake.wait(self._rest(max(tick, LISTENING_TICK_SECONDS) if listening else tick))
                else:
                    self._wake.wait(0.01)
            self._close_thread_connections(executor)
        # The pool has ended the work in hand: keep what it finished.
        try:
            self._record_finished()
        except Exception:
            logger.exception("recording finished jobs at shutdown failed")
        connections.close_all()

    def _round(self, pool: Executor) -> tuple[int, int]:
        """One round; returns how many jobs it claimed and how many it asked for."""
        now = time.monotonic()
        if now >= self._next_heartbeat:
            services.worker_heartbeat(worker_id=self.worker_id, started_at=self.started_at)
            self._next_heartbeat = now + HEARTBEAT_SECONDS
        if now >= self._next_sweep:
            services.generation_sweep()
            credits_upkeep()  # issue 18: reconcile pending purchases with Stripe
            self._next_sweep = now + SWEEP_SECONDS
        if now >= self._next_prune:
            services.upkeep_prune()
            self._next_prune = now + PRUNE_SECONDS
        self._record_finished()
        with self._lock:
            free = self.capacity - len(self._in_flight)
        if free <= 0:
            return 0, 0  # the pool is full: a job finishing wakes the poller
        # Up to BATCH due jobs per round; waiting ones only cost a status call each, and
        # follow-up work is bounded by `capacity`.
        asked = min(BATCH, free * 4)
        ids = services.generation_claim_due(limit=asked)
        for future in services.generation_poll_batch(generation_ids=ids, executor=pool):
            self._track(future)
        if now >= self._next_persist:
            for media_id in services.media_persist_due(limit=min(PERSIST_BATCH, free)):
                self._track(pool.submit(_safely, services.media_persist, media_id=media_id, reschedule=True))
            self._next_persist = now + PERSIST_CHECK_SECONDS
        if now >= self._next_storage:
            self._storage_upkeep(pool, limit=min(STORAGE_BATCH, free))
            self._next_storage = now + STORAGE_CHECK_SECONDS
        maybe_close_connections()
        return len(ids), asked

    def _storage_upkeep(self, pool: Executor, *, limit: int) -> None:
        """Retry owed storage work that is due; each claim is a lease, so work a crashed
        worker held is retried when it runs out."""
        for media_id in services.media_moves_due(limit=limit):
            self._track(pool.submit(_safely, services.media_move, media_id=media_id))
        for removal_id in services.stored_removals_due(limit=limit):
            self._track(pool.submit(_safely, services.stored_removal_attempt, removal_id=removal_id))

    def _rest(self, tick: float) -> float:
        try:
            due = selectors.generation_next_check_at()
        except Exception:
            logger.exception("reading the next due check failed")
            close_old_connections()
            return tick
        if due is None:
            return tick
        return max(0.005, min(tick, (due - timezone.now()).total_seconds()))

    def _close_thread_connections(self, executor: ThreadPoolExecutor) -> None:
        """Close every pool thread's database connection before the threads go away.

        A job per thread, held at a barrier so that each thread runs exactly one.
        """
        barrier = threading.Barrier(self.threads, timeout=5)

        def close() -> None:
            connections.close_all()
            try:
                barrier.wait()
            except threading.BrokenBarrierError:
                pass

        for _ in range(self.threads):
            executor.submit(close)


class WakeListener:
    """LISTEN for `services.WAKE_CHANNEL` on a connection of its own and wake the poller
    on every notification. Notifications sent while it is reconnecting are lost: the
    poller's tick finds those jobs instead, a little later.

    Its connect, LISTEN and keep-alive are each answered within WORKER_WAKE_TIMEOUT_SECONDS
    or the connection counts as dead: one that hangs (a server gone without a RST, a
    network that drops everything) would otherwise hold this thread for ever while the
    poller, believing it up, keeps its slower tick."""

    def __init__(
        self, *, wake: threading.Event, stop: threading.Event, heartbeat: float = WAKE_HEARTBEAT_SECONDS
    ) -> None:
        self._wake = wake
        self._stop = stop
        self._heartbeat = heartbeat
        self.listening = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="stefna-wake", daemon=True)
        self._thread.start()

    def join(self, timeout: float) -> None:
        """After `stop` is set: wait for the connection to close (within a second)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        import psycopg  # PostgreSQL only

        delay = 0.5
        while not self._stop.is_set():
            try:
                timeout = settings.WORKER_WAKE_TIMEOUT_SECONDS
                params = listen_params(application_name="stefna-worker")
                # libpq's connect_timeout is whole seconds, and at least 2.
                params["connect_timeout"] = max(2, math.ceil(timeout))
                conn = psycopg.connect(**params, autocommit=True)
                try:
                    self._query(conn.pgconn, f"LISTEN {services.WAKE_CHANNEL}", timeout)
                    self.listening.set()
                    delay = 0.5
                    self._wake.set()  # anything made due while it was not listening
                    last_trip = time.monotonic()
                    while not self._stop.is_set():
                        for _notify in conn.notifies(timeout=1.0):
                            self._wake.set()
                        if time.monotonic() - last_trip >= self._heartbeat:
                            self._query(conn.pgconn, "SELECT 1", timeout)
                            last_trip = time.monotonic()
                finally:
                    # Closed here, at once: leaving a `with` after an error would first try
                    # a rollback, and wait for ever on a connection that hangs.
                    conn.close()
            except Exception:  # a database restart, a dropped or hung connection, a refused connect
                logger.warning("worker wake-up: LISTEN connection lost; the poller's tick covers it", exc_info=True)
            finally:
                self.listening.clear()
            self._stop.wait(delay)
            delay = min(delay * 2, 10.0)

    def _query(self, pgconn: Any, sql: str, timeout: float) -> None:
        """Run `sql` (LISTEN, the keep-alive), answered within `timeout` or TimeoutError.

        Straight on libpq because of that bound (as generation/live.py's listener does):
        psycopg's `execute` has none, and waits for ever on a connection that hangs.
        Notifications read along with the answer wake the poller here: libpq has parsed
        them, so the socket holds nothing more for `notifies()` to wake on.
        """
        import psycopg  # PostgreSQL only
        from psycopg.pq import ExecStatus

        deadline = time.monotonic() + timeout
        woken = False

        def wait(*, writable: bool = False) -> None:
            remaining = deadline - time.monotonic()
            if remaining > 0:
                ready = select.select(
                    [] if writable else [pgconn.socket], [pgconn.socket] if writable else [], [], remaining
                )
                if any(ready):
                    return
            raise TimeoutError(f"no answer to {sql!r} within {timeout} s")

        pgconn.send_query(sql.encode())
        while pgconn.flush():  # a few bytes: sent at once unless the socket is full
            wait(writable=True)
        while True:
            pgconn.consume_input()  # raises OperationalError when the connection is gone
            while pgconn.notifies() is not None:
                woken = True
            if pgconn.is_busy():
                wait()
                continue
            if (result := pgconn.get_result()) is None:
                break  # the answer is complete
            if result.status not in (ExecStatus.COMMAND_OK, ExecStatus.TUPLES_OK):
                raise psycopg.OperationalError(result.error_message.decode(errors="replace"))
        while pgconn.notifies() is not None:  # any parsed with the answer's end
            woken = True
        if woken:
            self._wake.set()


def _safely(service: Any, **arguments: Any) -> None:
    """A retry the poller claimed (a copy, owed storage work), run on the pool: a failure
    is logged, and its claim runs out and it is tried again."""
    try:
        service(**arguments)
    except Exception:
        logger.exception("%s %s failed", service.__name__, arguments)


_thread_state = threading.local()


class ConnectionCaringExecutor(Executor):
    """Runs each job on the pool, then lets the thread check its database connection."""

    def __init__(self, inner: ThreadPoolExecutor) -> None:
        self.inner = inner

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        def run() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                maybe_close_connections()

        return self.inner.submit(run)


def maybe_close_connections() -> None:
    # Each pool thread keeps its own database connection between jobs. Django's usual
    # per-request clean-up would reopen it for every job (SQLite's CONN_MAX_AGE is 0),
    # which costs more than the job's own queries; instead each thread drops obsolete
    # connections every half minute (a job that fails drops a broken one at once).
    now = time.monotonic()
    if now >= getattr(_thread_state, "next_check", 0.0):
        close_old_connections_unless_in_transaction()
        _thread_state.next_check = now + CONNECTION_CHECK_SECONDS
