"""Submitting: queued → running (one writer), and sending each attempt to its model.

An `Attempt` row is written *before* fal is called and fal's request id right after, so
a worker killed mid-submission leaves a `submitting` attempt that the next claimer sends
again (or, when the id was stored, simply follows). Killed after fal accepted but before
the id was written, the job is sent twice: fal's queue takes no idempotency key, so
there is nothing to ask it; the extra run at fal is ours, the user is charged once.
"""

from __future__ import annotations

import base64
import json
import logging
import mimetypes
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from stefna.db import close_old_connections_unless_in_transaction

from .. import storage
from ..exceptions import ProviderError
from ..models import Attempt, Generation
from ..providers import get_provider
from ..registry import ModelConfigError, get_model
from .claim import claim_renew, generation_release, look_again_later, next_poll
from .log import about_batch, generation_log, label, log_transition, working_on
from .pace import first_check_delay
from .schedule import fal_rate_limited, generation_requeue
from .stop import (
    all_failed_message,
    cancel_at_provider,
    fail_attempt,
    generation_fail,
    result_lost_message,
    results_lost,
)

logger = logging.getLogger("generation")

BUILD_ERRORS = (IndexError, ModelConfigError, OSError, ValueError)


@dataclass
class Start:
    """A queued generation about to run: the model it starts with and what it is sent."""

    generation: Generation
    position: int
    endpoint: str
    payload: dict[str, Any]
    # An attempt fal refused at its limit (429), sent again instead of a new one.
    resume: Attempt | None = None


def generations_start(starts: list[Start]) -> list[tuple[Start, Attempt]]:
    """queued → running, for one generation or a whole batch: the only writer of it.

    In one transaction: the generations still queued are locked, moved to running with
    their first model, and given their first attempt (`submitting`). Returns those that
    started, each with its attempt; a generation canceled meanwhile is left out. The
    submission to fal follows, outside the transaction (`submit_attempt`).
    """
    if not starts:
        return []
    now = timezone.now()
    with transaction.atomic():
        # Locked until the commit: a cancel either comes first (and the generation is
        # not started) or waits, and then finds the attempt to cancel with it.
        still_queued = set(
            Generation.objects.select_for_update()
            .filter(pk__in=[start.generation.pk for start in starts], status=Generation.Status.QUEUED)
            .values_list("pk", flat=True)
        )
        started = [start for start in starts if start.generation.pk in still_queued]
        by_model: dict[str, list[uuid.UUID]] = {}
        for start in started:
            start.generation.status = Generation.Status.RUNNING
            start.generation.started_at = now
            start.generation.current_model = start.endpoint
            start.generation.queue_position = None
            by_model.setdefault(start.endpoint, []).append(start.generation.pk)
        # One UPDATE per first model (usually one): bulk_update's CASE per row and field
        # cost more than the rest of the batch.
        for endpoint, ids in by_model.items():
            Generation.objects.filter(pk__in=ids).update(
                status=Generation.Status.RUNNING, started_at=now, current_model=endpoint, queue_position=None
            )
        created = iter(
            Attempt.objects.bulk_create(
                Attempt(
                    generation=start.generation,
                    position=start.position,
                    model=start.endpoint,
                    status=Attempt.Status.SUBMITTING,
                    payload=shorten_payload(start.payload),
                )
                for start in started
                if start.resume is None
            )
        )
        attempts = [start.resume if start.resume is not None else next(created) for start in started]
    for start in started:
        with working_on(start.generation):
            log_transition(start.generation.pk, to=Generation.Status.RUNNING, writer="generations_start")
    return list(zip(started, attempts, strict=True))


def start_queued(generations: list[Generation]) -> tuple[list[Any], list[Generation]]:
    """Start new generations together (`generations_start`, one transaction for all).

    Returns the submissions to fal still to make (one per started generation, for the
    executor), and the generations left for the one-by-one path (`submit_model`): those
    whose request could not be built (it records why and tries the next model) and any
    no longer queued.
    """
    prepared: list[Start] = []
    not_started: list[Generation] = []
    parked = parked_attempts([generation.pk for generation in generations])
    for generation in generations:
        chain = list(generation.model_chain or [])
        resume = parked.get(generation.pk)
        try:
            if resume is not None:
                payload = build_payload(generation, resume.model)
                prepared.append(Start(generation, resume.position, resume.model, payload, resume=resume))
            else:
                prepared.append(Start(generation, 0, chain[0], build_payload(generation, chain[0])))
        except BUILD_ERRORS:
            not_started.append(generation)
    try:
        started = generations_start(prepared)
    except Exception:
        if len(generations) == 1:
            # Already the one-by-one path (`start_one`): its caller's safety net logs it as
            # this generation's and looks again shortly. "Starting 1 generations together
            # failed; starting them one by one" said neither.
            raise
        # A line about many generations, each asked for by its own request: it names them
        # all and their requests' ids, so following one request finds this line too.
        logger.exception(
            "starting %d generations together failed; starting them one by one",
            len(prepared),
            extra=about_batch([start.generation for start in prepared]),
        )
        close_old_connections_unless_in_transaction()
        return [], generations
    started_ids = {start.generation.pk for start, _ in started}
    not_started += [start.generation for start in prepared if start.generation.pk not in started_ids]
    submissions = [
        partial(submit_attempt_safely, start.generation, attempt, start.payload) for start, attempt in started
    ]
    return submissions, not_started


def parked_attempts(generation_ids: list[uuid.UUID]) -> dict[uuid.UUID, Attempt]:
    """The attempts waiting to be sent again after fal's 429 (`schedule.generation_requeue`),
    by generation: still `submitting`, never given a request id."""
    if not generation_ids:
        return {}
    waiting = Attempt.objects.filter(
        generation_id__in=generation_ids, status=Attempt.Status.SUBMITTING, fal_job_id=""
    ).order_by("started_at")
    return {attempt.generation_id: attempt for attempt in waiting}


def start_one(generation: Generation) -> None:
    """Start one queued generation now (the one-by-one path; the caller holds the claim):
    an attempt fal refused at its limit is sent again, otherwise the chain starts with its
    first model (`submit_model`)."""
    submissions, not_started = start_queued([generation])
    for submission in submissions:
        submission()
    for left in not_started:
        submit_model(left, position=0)


def submit_attempt_safely(generation: Generation, attempt: Attempt, payload: dict[str, Any]) -> None:
    with working_on(generation):
        try:
            submit_attempt(generation, attempt, payload=payload)
        except Exception:
            logger.exception("generation %s: submitting failed; will look again shortly", generation.pk)
            look_again_later(generation.pk)


def submit_model(generation: Generation, *, position: int) -> None:
    """Submit model number `position` of the chain, falling over to the next on refusal.

    When the chain is exhausted the generation fails (and is refunded).
    """
    chain = list(generation.model_chain or [])
    while True:
        if position >= len(chain):
            if results_lost(generation):  # said plainly: the images existed, then fal deleted them
                generation_fail(generation=generation, code="result_lost", message=result_lost_message(generation))
            else:
                generation_fail(generation=generation, code="all_models_failed", message=all_failed_message(generation))
            return
        endpoint = chain[position]
        try:
            payload = build_payload(generation, endpoint)
        except BUILD_ERRORS as exc:
            Attempt.objects.create(
                generation=generation,
                position=position,
                model=endpoint,
                status=Attempt.Status.FAILED,
                error=f"Could not build the request: {exc}",
                finished_at=timezone.now(),
            )
            generation_log(generation, f"{label(endpoint)} could not be asked: {exc}", level="error")
            position += 1
            continue
        attempt = _next_attempt(generation, position=position, endpoint=endpoint, payload=payload)
        if attempt is None:
            return  # canceled meanwhile
        if submit_attempt(generation, attempt, payload=payload, fall_over=False):
            return
        latest = Attempt.objects.get(pk=attempt.pk)
        if latest.status != Attempt.Status.FAILED:
            return  # transient trouble: the attempt waits for its retry
        position += 1


def _next_attempt(generation: Generation, *, position: int, endpoint: str, payload: dict[str, Any]) -> Attempt | None:
    """The attempt for model `position`: a queued generation starts with it
    (`generations_start`); a running one falls over to it."""
    if generation.status == Generation.Status.QUEUED:
        started = generations_start([Start(generation, position, endpoint, payload)])
        return started[0][1] if started else None
    logged = shorten_payload(payload)
    with transaction.atomic():
        attempt = Attempt.objects.create(
            generation=generation, position=position, model=endpoint, status=Attempt.Status.SUBMITTING, payload=logged
        )
        still_running = Generation.objects.filter(pk=generation.pk, status=Generation.Status.RUNNING).update(
            current_model=endpoint, request_payload=logged, queue_position=None
        )
        if not still_running:  # canceled meanwhile
            transaction.set_rollback(True)
            return None
    return attempt


def submit_attempt(
    generation: Generation,
    attempt: Attempt,
    *,
    payload: dict[str, Any] | None = None,
    fall_over: bool = True,
) -> bool:
    """Send one attempt to its model. True when fal accepted it (or it was already sent).

    On a permanent refusal the attempt is failed and, with `fall_over`, the next model
    is submitted; on transient trouble (rate limited, unreachable) the attempt stays
    `submitting` and the generation is due again after a backoff, until the attempt's
    time bound runs out.
    """
    if attempt.fal_job_id:
        Attempt.objects.filter(pk=attempt.pk, status=Attempt.Status.SUBMITTING).update(status=Attempt.Status.QUEUED)
        generation_release(generation_id=generation.pk)
        return True
    if payload is None:
        try:
            payload = build_payload(generation, attempt.model)
        except BUILD_ERRORS as exc:
            fail_attempt_then_next(generation, attempt, f"Could not build the request: {exc}")
            return False
    webhook_url = f"{settings.FAL_WEBHOOK_BASE_URL}/api/fal/webhook" if settings.FAL_WEBHOOK_BASE_URL else None
    prompt = payload.get("prompt")
    logger.info(
        "generation %s: submitting to %s; prompt sent (%d chars): %s",
        generation.pk,
        attempt.model,
        len(prompt or ""),
        prompt if prompt is not None else "(this model takes no prompt)",
    )
    if logger.isEnabledFor(logging.INFO):
        logger.info("generation %s: payload %s", generation.pk, json.dumps(shorten_payload(payload)))
    try:
        request_id = get_provider().submit(attempt.model, payload, webhook_url, kind=generation.kind)
    except ProviderError as exc:
        # (An attempt keeps its clock while it waits: a 429 that never ends runs into
        # FAL_ATTEMPT_TIMEOUT_SECONDS like any other trouble, and the next model tries.)
        if exc.code == "provider_rate_limited" and not attempt_expired(attempt):
            # fal's limit of jobs at once, not this model refusing: fewer jobs at a time
            # for a while, and this one waits for its turn again (nothing used up).
            fal_rate_limited()
            generation_requeue(generation=generation, attempt=attempt, reason=exc.message)
            return False
        if exc.permanent or attempt_expired(attempt):
            if fall_over:
                fail_attempt_then_next(generation, attempt, exc.message)
            else:
                fail_attempt(generation, attempt, exc.message)
            return False
        waited = (timezone.now() - attempt.started_at).total_seconds()
        Attempt.objects.filter(pk=attempt.pk, status=Attempt.Status.SUBMITTING).update(error=exc.message[:2000])
        generation_log(
            generation, f"{label(attempt.model)} is busy ({exc.message}); trying again shortly", level="warning"
        )
        generation_release(generation_id=generation.pk, seconds=min(30.0, max(2.0, waited)))
        return False
    # Stored right away: from here on a crash resumes from this id instead of paying twice.
    # The attempt's clock starts again now that fal has the job: FAL_ATTEMPT_TIMEOUT_SECONDS
    # bounds its time at fal. Time spent getting it there (a 429 and the wait for a slot
    # after it, which can be longer than the bound, or retries) would otherwise time the
    # job out at its first check and cancel it at fal unfinished (and skew pace.py's times).
    stored = Attempt.objects.filter(pk=attempt.pk, status=Attempt.Status.SUBMITTING).update(
        fal_job_id=request_id, status=Attempt.Status.QUEUED, error="", started_at=timezone.now()
    )
    if not stored:
        # The attempt was canceled while we were submitting: stop the job at fal too.
        cancel_at_provider(attempt.model, request_id)
        return True
    logger.info("generation %s: %s accepted it as %s", generation.pk, attempt.model, request_id)
    # (Canceled meanwhile: the cancel has logged the end; nothing to add.)
    generation_log(
        generation,
        f"Sent to {label(attempt.model)}",
        next_check_at=next_poll(seconds=first_check_delay(attempt.model)),
        only_if=Generation.ACTIVE_STATUSES,
        request_payload=attempt.payload,  # the last request, for staff
    )
    return True


def fail_attempt_then_next(generation: Generation, attempt: Attempt, message: str) -> None:
    """Fail the attempt and submit the next model of the chain (the caller holds the claim).

    Only while the claim is still the caller's, renewed for the submission to come
    (`claim.claim_renew`): a caller whose claim ran out while fal kept it waiting leaves
    the job to whoever holds it now, who learns the same final answer from fal."""
    if claim_renew(generation) and fail_attempt(generation, attempt, message):
        submit_model(generation, position=attempt.position + 1)


def attempt_expired(attempt: Attempt) -> bool:
    return (timezone.now() - attempt.started_at).total_seconds() > settings.FAL_ATTEMPT_TIMEOUT_SECONDS


def build_payload(generation: Generation, endpoint: str) -> dict[str, Any]:
    spec = get_model(endpoint)
    image_url = source_image_url(generation) if spec.takes_image else ""
    return spec.build_input(
        prompt=generation.prompt_sent,
        image_url=image_url,
        num_images=generation.num_images,
        parameters=dict(generation.parameters or {}),
        loras=list(generation.loras or []),
    )


def source_image_url(generation: Generation) -> str:
    """What fal fetches the photo from: a presigned bucket URL, or a data URI of it."""
    name = generation.source_image.name
    if not name:
        raise ValueError("the generation has no stored photo")
    if settings.STORAGE_PUBLIC_URLS:
        # Signed for one attempt's lifetime (and a margin for fal's queue): each attempt
        # asks again, and a URL that leaked from fal's logs dies with the attempt.
        presigned = storage.presigned_address(name, seconds=settings.FAL_ATTEMPT_TIMEOUT_SECONDS + 60)
        return presigned or default_storage.url(name)
    with default_storage.open(name, "rb") as file:
        data = file.read()
    content_type = mimetypes.guess_type(name)[0] or "image/jpeg"
    return f"data:{content_type};base64,{base64.b64encode(data).decode()}"


def shorten_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload for logs and the database: data URIs cut to a recognisable stub."""
    shortened: dict[str, Any] = {}
    for key, value in payload.items():
        if isinstance(value, str) and value.startswith("data:") and len(value) > 80:
            head, _, body = value.partition(",")
            value = f"{head},{body[:24]}…({len(value)} chars)"
        shortened[key] = value
    return shortened
