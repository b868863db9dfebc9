"""Advancing: one round of the worker over the due generations.

The worker's poller claims due generations (`claim.generation_claim_due`) and hands
them to `generation_poll_batch`, which looks at each one's newest attempt and does the
one thing that moves the job on: start it, submit an attempt that never got a request
id, check fal's status, copy a finished result, or fall over to the next model. Every
state change underneath is a conditional UPDATE on the current status, so a webhook, a
poll and a cancel that overlap change each thing once.

Nothing here waits for a generation to finish: each step is one short call to fal.
Threads and pools are the worker's (`generation/worker.py`); an executor passed in is
only used to run these steps side by side.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from contextlib import nullcontext
from functools import partial
from typing import Any

from django.db.models import Case, IntegerField, Value, When
from django.utils import timezone

from ..exceptions import ProviderError
from ..models import Attempt, Generation
from ..providers import ProviderState, ProviderStatus
from .check import apply_status_safely, check_attempt, check_delay, fetch_status, progress_change
from .claim import GenerationId, look_again_later, still_held
from .finish import Finished, copy_stored, generations_finish
from .log import working_on
from .schedule import generation_claim_due, generations_schedule
from .submit import attempt_expired, start_one, start_queued, submit_attempt, submit_model

logger = logging.getLogger("generation")


def generation_submit(*, generation_id: GenerationId) -> None:
    """Submit one queued generation to the first model of its chain, now.

    The poller does this for every queued generation whose turn has come; this is the
    same for one (tests, a shell), out of the fair order but within FAL_MAX_CONCURRENT.
    Does nothing if the generation is no longer queued, someone already holds it or no
    slot is free, so calling it twice, or racing the poller, submits once.
    """
    if generations_schedule(limit=1, only=generation_id):
        generation = Generation.objects.filter(pk=generation_id).first()
        if generation is not None:
            generation_advance(generation_id=generation_id, generation=generation)


def generation_poll_due(*, limit: int = 100, executor: Executor | None = None) -> int:
    """Claim due generations and move each on; concurrently on `executor` when given.

    Returns how many were claimed. The worker's poller does the same in a loop (see
    `generation_poll_batch`); tests call this directly, without an executor, so
    everything runs in the test's thread and transaction.
    """
    ids = generation_claim_due(limit=limit)
    results = [future.result() for future in generation_poll_batch(generation_ids=ids, executor=executor)]
    generations_finish(finished=[result for result in results if isinstance(result, Finished)])
    return len(ids)


def generation_poll_batch(
    *, generation_ids: Sequence[GenerationId], executor: Executor | None = None
) -> list[Future[Finished | None]]:
    """Move a batch of claimed generations on. Returns the follow-up work still running;
    a future whose result is a `Finished` job is for the caller to record
    (`generations_finish`), together with others.

    Most due jobs are simply waiting in fal's queue, so they are handled as a batch:
    one query loads their attempts, their statuses are fetched concurrently, and every
    job whose status did not change (or only its place in fal's queue) is rescheduled
    with a single UPDATE. New generations are started together (`start_queued`). The
    rest (their submissions, changed progress, completions, failures) run one by one,
    on the executor when there is one; those futures are returned, not awaited, so a
    slow completion (a Cloudinary upload) never holds up the next round of checks.
    """
    if not generation_ids:
        return []
    pollable = {
        attempt.generation_id: attempt
        for attempt in Attempt.objects.select_related("generation")
        .filter(generation_id__in=generation_ids, status__in=(Attempt.Status.QUEUED, Attempt.Status.RUNNING))
        .filter(generation__status=Generation.Status.RUNNING)
        .exclude(fal_job_id="")
    }
    attempts = list(pollable.values())
    if executor is None:
        statuses = [fetch_status_of(attempt) for attempt in attempts]
    else:
        statuses = list(executor.map(fetch_status_of, attempts))
    unchanged = []
    # The rest are loaded together: mostly new generations, started together (their
    # submissions to fal follow on the executor), and a few to advance one by one.
    others = Generation.objects.in_bulk([gid for gid in generation_ids if gid not in pollable])
    queued = [generation for generation in others.values() if generation.status == Generation.Status.QUEUED]
    to_advance = [generation for generation in others.values() if generation.status != Generation.Status.QUEUED]
    submissions, not_started = start_queued(queued)
    follow_ups: list[Any] = [
        *submissions,
        *(
            partial(generation_advance_safely, generation_id=generation.pk, generation=generation)
            for generation in [*not_started, *to_advance]
        ),
    ]
    moved: dict[uuid.UUID, int | None] = {}  # only their place in fal's queue changed
    status_of: dict[uuid.UUID, ProviderStatus] = {}
    for attempt, status in zip(attempts, statuses, strict=True):
        generation = attempt.generation
        if (
            isinstance(status, ProviderStatus)
            and status.state != ProviderState.COMPLETED
            and not attempt_expired(attempt)
        ):
            change = progress_change(generation, attempt, status)
            status_of[generation.pk] = status
            if change is None:
                unchanged.append(generation.pk)
                continue
            if change == "position":
                moved[generation.pk] = status.queue_position
                continue
        follow_ups.append(partial(apply_status_safely, generation, attempt, status))
    # Each job's next check is due when its model's job is likely done (`pace`): the
    # times are rounded to CHECK_GRAIN seconds so that one UPDATE serves many jobs.
    # Each UPDATE writes only rows still under the claim this round read (`still_held`):
    # one that ran out while fal kept us waiting belongs to another round by now. Every
    # job of a round is claimed with the same lease, so that adds no UPDATE.
    now = timezone.now()
    by_time: dict[tuple[dt.datetime, dt.datetime | None], list[uuid.UUID]] = {}
    for pk in [*unchanged, *moved]:
        attempt, status = pollable[pk], status_of[pk]
        key = (_grain(now, check_delay(attempt, status)), attempt.generation.next_check_at)
        by_time.setdefault(key, []).append(pk)
    for (next_check_at, _), ids in by_time.items():
        held = Generation.objects.filter(still_held(pollable[ids[0]].generation), status=Generation.Status.RUNNING)
        moved_here = {pk: moved[pk] for pk in ids if pk in moved}
        if moved_here:
            held.filter(pk__in=moved_here).update(
                queue_position=Case(
                    *(When(pk=pk, then=Value(position)) for pk, position in moved_here.items()),
                    output_field=IntegerField(),
                ),
                next_check_at=next_check_at,
            )
        still = [pk for pk in ids if pk not in moved_here]
        if still:
            held.filter(pk__in=still).update(next_check_at=next_check_at)
    if executor is None:
        done: list[Future[Finished | None]] = []
        for work in follow_ups:
            future: Future[Finished | None] = Future()
            future.set_result(work())
            done.append(future)
        return done
    return [executor.submit(work) for work in follow_ups]


def fetch_status_of(attempt: Attempt) -> ProviderStatus | ProviderError:
    """fal's status of an attempt (loaded with its generation), logged as its generation's."""
    with working_on(attempt.generation):
        return fetch_status(attempt)


CHECK_GRAIN = 0.05


def _grain(now: dt.datetime, seconds: float) -> dt.datetime:
    rounded = round(seconds / CHECK_GRAIN) * CHECK_GRAIN
    return now + dt.timedelta(seconds=rounded)


def generation_advance_safely(*, generation_id: GenerationId, generation: Generation | None = None) -> Finished | None:
    """`generation_advance`, but a bug or a database hiccup only delays this one job."""
    with working_on(generation) if generation is not None else nullcontext():
        try:
            return generation_advance(generation_id=generation_id, generation=generation)
        except Exception:
            logger.exception("generation %s: advancing failed; will look again shortly", generation_id)
            look_again_later(generation_id)
            return None


def generation_advance(*, generation_id: GenerationId, generation: Generation | None = None) -> Finished | None:
    """Move a claimed generation one step on. The caller holds the claim.

    `generation`, read after the claim by a caller that has it already, saves a query:
    a queued generation needs nothing else to be submitted. An attempt whose answer a
    webhook stored comes back copied, as a `Finished` job for the caller to record
    with the round's others (`generations_finish`), exactly like one the poller found.
    """
    attempt = None
    if generation is None or generation.status != Generation.Status.QUEUED:
        # One query for the usual case (an attempt in flight): the newest attempt with its
        # generation. started_at, not position: after a staff retry the chain starts again.
        attempt = (
            Attempt.objects.select_related("generation")
            .filter(generation_id=generation_id)
            .order_by("-started_at", "-position")
            .first()
        )
        generation = attempt.generation if attempt else Generation.objects.filter(pk=generation_id).first()
    if generation is None or generation.is_final:
        return None
    with working_on(generation):
        return _advance(generation, attempt)


def _advance(generation: Generation, attempt: Attempt | None) -> Finished | None:
    if generation.status == Generation.Status.QUEUED:
        start_one(generation)  # moves it to running with its attempt
    elif attempt is None:
        submit_model(generation, position=0)
    elif attempt.status == Attempt.Status.SUBMITTING:
        submit_attempt(generation, attempt)
    elif attempt.status in (Attempt.Status.QUEUED, Attempt.Status.RUNNING):
        check_attempt(generation, attempt)
    elif attempt.status == Attempt.Status.SUCCEEDED:
        return copy_stored(generation, attempt)
    else:
        submit_model(generation, position=attempt.position + 1)
    return None
