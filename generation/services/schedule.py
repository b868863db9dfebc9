"""Scheduling: which waiting generation starts next, and how many may be at fal at once.

FAL_MAX_CONCURRENT bounds the jobs in flight at fal across every worker process. A
generation takes a slot from the moment a worker picks it to start until it ends:

- every `running` generation: submitting, at fal, being copied, or falling over to the
  next model of its chain (which submits again without asking for a slot), so each one
  holds, or is about to hold, a job at fal;
- every `queued` generation a worker holds (its `next_check_at` lease is in the future):
  picked to start, not moved to running yet.

Counting, picking and leasing happen in one transaction under one lock
(`generations_schedule`): PostgreSQL's advisory transaction lock, or SQLite's single
writer (the project's transactions start with BEGIN IMMEDIATE), so two worker processes
never hand out the same free slot.

Fair order: the next job to start is the oldest waiting job of the user with the fewest
jobs in flight (jobs already picked in this order count as theirs), ties by age: round
robin across users, so one user's forty jobs never hold everyone else up. Each waiting
generation's `queue_position` is its place in that order (1 = next), rewritten in one
UPDATE per round for the rows whose place changed.

fal's 429 (its account limit on jobs at once): the submission is not a failure. The
generation goes back to waiting with its attempt untouched (`generation_requeue`), and
the effective limit halves (at least 1), then grows back a step every quiet period
(`effective_limit`). It lives in the cache, which every worker process shares (the
database's cache table, or Redis when REDIS_URL is set), as one small value: the level it
was lowered to and when. Recovery is computed from that on read, so nothing has to run
to give slots back; if the cache loses the value the limit is simply the configured one.
"""

from __future__ import annotations

import datetime as dt
import heapq
import logging
import math
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Case, Count, IntegerField, Q, Value, When
from django.utils import timezone

from ..models import Attempt, Generation
from .claim import GenerationId, generation_claim_running, lease_until
from .log import generation_log, label, log_transition

logger = logging.getLogger("generation")

LIMIT_CACHE_KEY = "generation:fal-effective-limit"
# Several submissions refused at once come from one level: they lower it once.
LOWER_AGAIN_AFTER_SECONDS = 2.0
# Right after a 429 nothing new starts for a moment: fal has just said "not now".
PAUSE_SECONDS = 1.0
# Each period without a 429 gives back one step (a tenth of FAL_MAX_CONCURRENT, at least 1).
QUIET_SECONDS = 30.0
# pg_advisory_xact_lock's key for "count, pick, lease" (any constant unique to this lock).
SCHEDULE_LOCK_KEY = 7_220_022
POSITION_UPDATE_CHUNK = 500


# --- The effective limit --------------------------------------------------------------------


def _now_seconds(now: dt.datetime | None) -> float:
    return (now or timezone.now()).timestamp()


def _recovery_step() -> int:
    return max(1, settings.FAL_MAX_CONCURRENT // 10)


def _lowered() -> tuple[int, float] | None:
    """What the last 429 left: the lowered limit and when (epoch seconds), or None.
    Read once per decision: with the database cache each read is a query."""
    return cache.get(LIMIT_CACHE_KEY) or None


def _effective(state: tuple[int, float] | None, now: dt.datetime | None) -> int:
    configured = settings.FAL_MAX_CONCURRENT
    if not state:
        return configured
    lowered_to, lowered_at = state
    quiet_periods = int(max(0.0, _now_seconds(now) - lowered_at) // QUIET_SECONDS)
    return max(1, min(configured, lowered_to + _recovery_step() * quiet_periods))


def _paused(state: tuple[int, float] | None, now: dt.datetime | None) -> bool:
    return state is not None and _now_seconds(now) - state[1] < PAUSE_SECONDS


def effective_limit(*, now: dt.datetime | None = None) -> int:
    """How many jobs may be in flight at fal now: FAL_MAX_CONCURRENT, or less after a 429."""
    return _effective(_lowered(), now)


def fal_rate_limited(*, now: dt.datetime | None = None) -> int:
    """fal refused a submission with 429: halve the effective limit (at least 1).

    Returns the new limit. A burst of refusals (several threads or workers hitting the
    same level) lowers it once. Two processes lowering at the same instant may both
    write; either value is a halving, so nothing worse than one step too low follows.
    """
    seconds = _now_seconds(now)
    state = _lowered()
    current = _effective(state, now)
    if state and seconds - state[1] < LOWER_AGAIN_AFTER_SECONDS:
        return current
    lowered = max(1, current // 2)
    steps_back = math.ceil((settings.FAL_MAX_CONCURRENT - lowered) / _recovery_step())
    # Kept until fully recovered (and a little longer); a lost value means "configured".
    cache.set(LIMIT_CACHE_KEY, (lowered, seconds), timeout=int((steps_back + 1) * QUIET_SECONDS) + 60)
    logger.warning(
        "fal is at its limit of jobs at once (429): starting at most %d at a time for a while (was %d)",
        lowered,
        current,
    )
    return lowered


# --- The fair order -----------------------------------------------------------------------


@dataclass(frozen=True)
class Waiting:
    """A queued generation waiting for a slot."""

    pk: uuid.UUID
    user_id: Any
    created_at: dt.datetime
    queue_position: int | None = None


def fair_order(waiting: Sequence[Waiting], in_flight: Mapping[Any, int]) -> list[Waiting]:
    """The waiting jobs in the order they should start.

    Next is always the oldest waiting job of the user with the fewest jobs in flight,
    counting the ones placed before it in this order; ties go to the older job.
    """
    by_user: dict[Any, deque[Waiting]] = {}
    for job in sorted(waiting, key=lambda job: (job.created_at, str(job.pk))):
        by_user.setdefault(job.user_id, deque()).append(job)
    heap = [(in_flight.get(user, 0), jobs[0].created_at, str(jobs[0].pk), user) for user, jobs in by_user.items()]
    heapq.heapify(heap)
    order = []
    while heap:
        count, _, _, user = heapq.heappop(heap)
        jobs = by_user[user]
        order.append(jobs.popleft())
        if jobs:
            heapq.heappush(heap, (count + 1, jobs[0].created_at, str(jobs[0].pk), user))
    return order


def _lock() -> None:
    # PostgreSQL: held until the transaction ends. SQLite needs nothing more: the
    # transaction began with BEGIN IMMEDIATE (settings), so it already is the only writer.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SCHEDULE_LOCK_KEY])


def slots_taken(*, now: dt.datetime | None = None) -> dict[Any, int]:
    """Jobs in flight per user (see the module docstring for what takes a slot)."""
    now = now or timezone.now()
    taken = (
        Generation.objects.filter(
            Q(status=Generation.Status.RUNNING) | Q(status=Generation.Status.QUEUED, next_check_at__gt=now)
        )
        .order_by()
        .values("user_id")
        .annotate(jobs=Count("pk"))
        .values_list("user_id", "jobs")
    )
    return dict(taken)


def generations_schedule(
    *, limit: int, now: dt.datetime | None = None, only: GenerationId | None = None
) -> list[uuid.UUID]:
    """Pick the waiting generations to start now, in fair order, within the effective
    limit, and lease them (the caller starts them: `advance.generation_poll_batch`).

    Also rewrites the other waiting generations' `queue_position`. With `only`, just that
    generation is picked, if a slot is free (a push from a shell or a test); the order
    of the others is left alone.
    """
    now = now or timezone.now()
    waiting = Generation.objects.filter(status=Generation.Status.QUEUED, next_check_at__lte=now)
    if only is not None:
        waiting = waiting.filter(pk=only)
    if not waiting.exists():  # the usual round: nothing waits, no lock taken
        return []
    with transaction.atomic():
        _lock()
        in_flight = slots_taken(now=now)
        state = _lowered()
        free = 0 if _paused(state, now) else max(0, _effective(state, now) - sum(in_flight.values()))
        rows = [
            Waiting(*row) for row in waiting.order_by().values_list("pk", "user_id", "created_at", "queue_position")
        ]
        order = fair_order(rows, in_flight)
        picked = order[: max(0, min(free, limit))]
        if picked:
            Generation.objects.filter(pk__in=[job.pk for job in picked], status=Generation.Status.QUEUED).update(
                next_check_at=lease_until(now)
            )
        if only is None:
            _write_positions(order[len(picked) :])
    return [job.pk for job in picked]


def _write_positions(order: Sequence[Waiting]) -> None:
    changed = {job.pk: place for place, job in enumerate(order, start=1) if job.queue_position != place}
    items = list(changed.items())
    for start in range(0, len(items), POSITION_UPDATE_CHUNK):
        chunk = dict(items[start : start + POSITION_UPDATE_CHUNK])
        Generation.objects.filter(pk__in=chunk, status=Generation.Status.QUEUED).update(
            queue_position=Case(
                *(When(pk=pk, then=Value(place)) for pk, place in chunk.items()), output_field=IntegerField()
            )
        )


def generation_claim_due(*, limit: int, now: dt.datetime | None = None) -> list[uuid.UUID]:
    """Claim up to `limit` generations to work on now: the waiting ones whose turn has
    come (`generations_schedule`), then running ones whose next check is due
    (`claim.generation_claim_running`). The worker's poller calls this every round."""
    now = now or timezone.now()
    starting = generations_schedule(limit=limit, now=now)
    return starting + generation_claim_running(limit=limit - len(starting), now=now)


# --- Back to waiting ---------------------------------------------------------------------


def generation_requeue(*, generation: Generation, attempt: Attempt, reason: str) -> bool:
    """running → queued, the only writer of it: fal refused a submission for being at
    its account's limit of jobs at once (429). True when the generation went back.

    The attempt never reached fal (it has no request id), so it stays as it is,
    `submitting`, and is sent again when the generation's turn comes
    (`submit.start_queued` resumes it): no model of the chain is used up, and the
    credits, reserved once when the job was requested, are neither charged nor
    reserved again. The generation gives its slot back and waits in the fair order;
    its owner sees one line about it, however often fal says the same.
    """
    with transaction.atomic():
        # Lock order: the attempt, then the generation, as every writer of both.
        previous_error = (
            Attempt.objects.select_for_update()
            .filter(pk=attempt.pk, status=Attempt.Status.SUBMITTING, fal_job_id="")
            .values_list("error", flat=True)
            .first()
        )
        if previous_error is None:
            return False
        requeued = Generation.objects.filter(pk=generation.pk, status=Generation.Status.RUNNING).update(
            status=Generation.Status.QUEUED, queue_position=None, next_check_at=timezone.now()
        )
        if not requeued:
            return False
        Attempt.objects.filter(pk=attempt.pk).update(error=reason[:2000])
    log_transition(generation.pk, to=Generation.Status.QUEUED, writer="generation_requeue")
    if not previous_error:
        generation_log(generation, f"{label(attempt.model)} is busy ({reason}); trying again shortly", level="warning")
    return True
