"""Claims: who may work on a generation right now.

Whoever works on a generation first claims it with a conditional UPDATE that moves
`next_check_at` from "due" (<= now) to "leased" (now + PIPELINE_LEASE_SECONDS). Only one
claimer matches the row; a task delivered twice, the poller and a webhook racing, or two
worker processes all end with one winner. When the holder is done it sets `next_check_at`
to when the job should be looked at next (the poll interval, a backoff, or NULL when
final). A crashed holder's lease simply runs out and the job becomes due again: that is
how work resumes after a crash.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Model, Q, QuerySet
from django.utils import timezone

from stefna.db import close_old_connections_unless_in_transaction

from ..models import Generation

logger = logging.getLogger("generation")

GenerationId = uuid.UUID | str


def lease_until(now: dt.datetime | None = None) -> dt.datetime:
    return (now or timezone.now()) + dt.timedelta(seconds=settings.PIPELINE_LEASE_SECONDS)


def claim_due[ModelT: Model](
    queryset: QuerySet[ModelT], *, field: str, limit: int, now: dt.datetime, of: tuple[str, ...] = ()
) -> list[Any]:
    """Claim up to `limit` rows of `queryset` (already filtered to the due ones), oldest
    `field` first: each row's `field` moves to a lease in the same transaction, skipping
    rows another worker holds, so two never take the same row and a crashed holder's
    claim runs out. Returns the claimed ids. For retries kept on other rows than a
    generation's (images to copy, owed storage work)."""
    with transaction.atomic():
        ids = list(
            queryset.order_by(field).select_for_update(skip_locked=True, of=of).values_list("pk", flat=True)[:limit]
        )
        if ids:
            queryset.model._default_manager.filter(pk__in=ids).update(**{field: lease_until(now)})
    return ids


def backoff_at(*, attempts: int, first: float, most: float, now: dt.datetime | None = None) -> dt.datetime:
    """When to try again after `attempts` failed tries: `first` seconds after the first,
    doubling with each one, never more than `most` apart (copies of images, owed storage
    work). The exponent is bounded so that a row retried for years stays a small number."""
    delay = min(most, first * 2 ** min(max(0, attempts - 1), 32))
    return (now or timezone.now()) + dt.timedelta(seconds=delay)


def next_poll(now: dt.datetime | None = None, *, seconds: float | None = None) -> dt.datetime:
    interval = settings.FAL_POLL_INTERVAL_SECONDS if seconds is None else seconds
    return (now or timezone.now()) + dt.timedelta(seconds=interval)


def generation_claim_running(*, limit: int, now: dt.datetime | None = None) -> list[uuid.UUID]:
    """Claim up to `limit` running generations whose next check is due, oldest due first.

    On PostgreSQL the rows are locked with SKIP LOCKED while the lease is written, so
    two workers claiming at once take disjoint sets. SQLite ignores FOR UPDATE but
    runs every writing transaction under one lock (BEGIN IMMEDIATE), which gives the
    same result. Queued generations are started in fair order instead
    (`schedule.generation_claim_due`).
    """
    now = now or timezone.now()
    if limit <= 0:
        return []
    due = Generation.objects.filter(status=Generation.Status.RUNNING, next_check_at__lte=now)
    return claim_due(due, field="next_check_at", limit=limit, now=now)


def still_held(generation: Generation) -> Q:
    """The condition for a claim holder's writes to a generation: the lease it claimed it
    with (its `next_check_at` as read after the claim) is still on the row.

    A holder that took longer than its lease (fal slow to answer) has lost the job: the
    next round claimed it (a new lease), a webhook made it due, or it ended. Its writes
    then change nothing: a stale "still in the queue" would otherwise move the next check
    of the round working on it now, and a third round could take the job meanwhile and
    send the next model again. One more equality on the row the UPDATE writes anyway, so
    it costs no query. Leases are written to the microsecond, so two claims never carry
    the same one."""
    return Q(next_check_at=generation.next_check_at)


def claim_renew(generation: Generation) -> bool:
    """Renew a holder's claim before it falls over to the next model: a fresh lease, only
    while its own is still on the row (`still_held`). True when renewed; `generation`
    then carries the new lease.

    A holder kept waiting by fal past its lease has lost the job if another round took it
    (that round asks fal itself, and gets the same final answer), and holds it again if
    nobody did. Without the new lease the job would stay due all through the fall-over,
    and a round claiming it meanwhile would find the next model's attempt not sent yet
    and send it a second time. One UPDATE, only when an attempt fails."""
    lease = lease_until()
    renewed = Generation.objects.filter(
        still_held(generation), pk=generation.pk, status__in=Generation.ACTIVE_STATUSES
    ).update(next_check_at=lease)
    if renewed:
        generation.next_check_at = lease
    return bool(renewed)


def generation_release(
    *, generation_id: GenerationId, seconds: float | None = None, held: Generation | None = None
) -> None:
    """Hand a claimed generation back, due again in `seconds` (default: the poll interval).
    Due at once (fal's webhook stored an answer), the workers are woken for it. With
    `held` (the holder's generation as read after its claim), only while that claim is
    still on the row (`still_held`): a holder whose call to fal outlived its lease hands
    back nothing, since the job is another round's by now."""
    rows = Generation.objects.filter(pk=generation_id, status__in=Generation.ACTIVE_STATUSES)
    if held is not None:
        rows = rows.filter(still_held(held))
    released = rows.update(next_check_at=next_poll(seconds=seconds))
    if released and seconds == 0:
        workers_wake()


# The channel a worker's poller LISTENs on (worker.WakeListener), PostgreSQL only.
WAKE_CHANNEL = "stefna_due"


def workers_wake() -> None:
    """Wake the workers' pollers: a job is due now that none of them made due (a new
    generation, fal's webhook, a retry).

    A NOTIFY, which PostgreSQL delivers when the surrounding transaction commits (and
    never if it rolls back), and once however many were sent in it. Without it (SQLite,
    or a worker whose listener is reconnecting) the poller finds the job at its next
    idle tick (worker.IDLE_TICK_SECONDS).
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, '')", [WAKE_CHANNEL])


def look_again_later(generation_id: GenerationId) -> None:
    """After an unexpected error: the job is due again in a few seconds (a bug or a
    database hiccup only delays this one job)."""
    close_old_connections_unless_in_transaction()  # drops the connection if the error broke it
    try:
        generation_release(generation_id=generation_id, seconds=max(5.0, settings.FAL_POLL_INTERVAL_SECONDS))
    except Exception:
        logger.exception("generation %s: could not release", generation_id)
