"""Writes for generations: starting one, and everything that moves it afterwards.

Every function here is named `<entity>_<verb>`, takes keyword arguments and runs in
one transaction. Views, endpoints and tasks call these; nothing else writes
`Generation`, `Attempt` or `Media` rows.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import mimetypes
import os
import socket
import uuid
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.db.models import Case, DateTimeField, F, IntegerField, Value, When
from django.utils import timezone

from credits import ledger
from credits.exceptions import AlreadySettled
from presets.models import Preset
from stefna import ratelimit
from stefna.errors import InvalidInput, NotFound

from . import persistence, result_urls, storage
from .exceptions import IdempotencyConflict, InvalidTransition, ProviderError
from .images import ValidatedImage
from .models import AppendLogLines, Attempt, Generation, Media, WorkerHeartbeat
from .providers import Provider, ProviderState, ProviderStatus, get_provider
from .providers.local import LocalProvider
from .registry import MODELS, ModelConfigError, ModelSpec, OutputImage, get_model

if TYPE_CHECKING:
    from credits.models import CreditEntry
    from stefna.accounts.models import User

logger = logging.getLogger("generation")


def clean_prompt(prompt: str | None, *, required: bool) -> str:
    """The user's prompt, trimmed and checked. Nothing else about it is changed."""
    prompt = (prompt or "").strip()
    if "\x00" in prompt:
        raise InvalidInput("The prompt contains a NUL character.", detail={"field": "prompt"})
    if len(prompt) > settings.MAX_PROMPT_CHARS:
        raise InvalidInput(
            f"The prompt is {len(prompt)} characters; the limit is {settings.MAX_PROMPT_CHARS}.",
            detail={"field": "prompt", "max_length": settings.MAX_PROMPT_CHARS},
        )
    if required and not prompt:
        raise InvalidInput("This style needs a prompt: describe what you want to see.", detail={"field": "prompt"})
    return prompt


def render_prompt(template: str, user_prompt: str) -> str:
    """The final prompt: the preset's template with `{prompt}` replaced by the user's text."""
    if not template:
        return user_prompt
    if "{prompt}" in template:
        # str.replace, not format(): user text with braces must pass through untouched.
        return template.replace("{prompt}", user_prompt).strip()
    return f"{template}, {user_prompt}" if user_prompt else template


def active_preset(slug: str) -> Preset:
    preset = Preset.objects.filter(slug=(slug or "").strip(), is_active=True).first()
    if preset is None:
        raise InvalidInput(f"There is no active style called {slug!r}.", detail={"field": "preset"})
    return preset


def source_image_path(*, user_id: object, kind: str, extension: str) -> str:
    return storage.source_name(extension=extension)  # unguessable, no user id in it


def _fingerprint(*, preset_slug: str, prompt: str, is_public: bool, image_sha256: str) -> str:
    body = json.dumps([preset_slug, prompt, is_public, image_sha256])
    return hashlib.sha256(body.encode()).hexdigest()


def generation_request(
    *,
    user: User,
    preset_slug: str,
    image: ValidatedImage,
    prompt: str | None = "",
    is_public: bool = False,
    idempotency_key: str | None = None,
) -> tuple[Generation, bool]:
    """Start a generation: store the photo, reserve the credits, queue the submission.

    Returns `(generation, created)`. With an `idempotency_key` already used by this
    user for the same request, returns the first generation and `created=False`,
    charging nothing; for a different request it raises IdempotencyConflict.
    Every refusal (bad preset or prompt, too few credits) leaves nothing stored
    and nothing charged.
    """
    preset = active_preset(preset_slug)
    prompt = clean_prompt(prompt, required=preset.requires_prompt)
    idempotency_key = (idempotency_key or "").strip()[:200] or None
    fingerprint = _fingerprint(preset_slug=preset.slug, prompt=prompt, is_public=is_public, image_sha256=image.sha256)
    if idempotency_key:
        existing = _idempotent_replay(user=user, key=idempotency_key, fingerprint=fingerprint)
        if existing:
            return existing, False
    limit, window = settings.RATE_LIMIT_GENERATIONS
    ratelimit.hit(f"generation-start:{user.pk}", limit=limit, window=window)

    path = source_image_path(user_id=user.pk, kind=preset.kind, extension=image.extension)
    saved_path: str | None = None
    try:
        with transaction.atomic():
            generation = Generation.objects.create(
                source_image=path,  # the name it is saved under below (unique: a UUID)
                user=user,
                preset=preset,
                preset_slug=preset.slug,
                preset_name=preset.name,
                kind=preset.kind,
                prompt=prompt,
                prompt_template=preset.prompt,
                prompt_sent=render_prompt(preset.prompt, prompt),
                model_chain=list(preset.model_chain),
                parameters=dict(preset.parameters or {}),
                loras=list(preset.loras or []),
                num_images=preset.num_images,
                cost=settings.GENERATION_COST,
                is_public=is_public,
                idempotency_key=idempotency_key,
                request_fingerprint=fingerprint,
                source_width=image.width,
                source_height=image.height,
                next_check_at=timezone.now(),
                logs=[_log_line("Queued")],
            )
            ledger.reserve(user=user, generation=generation, amount=generation.cost, new_generation=True)
            # The file is written last, after the credits are secured; if anything
            # below fails it is removed again, so a refusal stores nothing.
            saved_path = default_storage.save(path, _content_file(image))
            if saved_path != path:  # the storage chose another name after all
                generation.source_image.name = saved_path
                generation.save(update_fields=["source_image"])
            # Due at once (next_check_at=now): the worker's poller submits it within a tick.
    except IntegrityError:
        _discard(saved_path)
        if idempotency_key:
            # Two requests with one key raced; the other one won.
            existing = _idempotent_replay(user=user, key=idempotency_key, fingerprint=fingerprint)
            if existing:
                return existing, False
        raise
    except BaseException:
        _discard(saved_path)
        raise
    logger.info("generation %s requested: preset=%s user=%s", generation.pk, preset.slug, user.pk)
    return generation, True


def _idempotent_replay(*, user: User, key: str, fingerprint: str) -> Generation | None:
    existing = Generation.objects.filter(user=user, idempotency_key=key).first()
    if existing is None:
        return None
    if existing.request_fingerprint != fingerprint:
        raise IdempotencyConflict(detail={"generation_id": str(existing.pk)})
    return existing


def _content_file(image: ValidatedImage):  # type: ignore[no-untyped-def]
    from django.core.files.base import ContentFile

    return ContentFile(image.content)


def _discard(path: str | None) -> None:
    if path:
        try:
            default_storage.delete(path)
        except Exception:  # a cleanup failure must not hide the original error
            logger.exception("could not remove %s", path)


def _log_line(message: str, level: str = "info") -> dict[str, str]:
    return {"message": message, "level": level, "timestamp": timezone.now().isoformat()}


# --- Owner actions on generations and media ----------------------------------------------


def generation_hide(*, user: User, generation_id: uuid.UUID | str) -> None:
    """Remove a finished generation from its owner's history. The row stays (money record)."""
    generation = Generation.objects.filter(pk=generation_id, user=user, deleted_at__isnull=True).first()
    if generation is None:
        raise NotFound("Generation not found.")
    with transaction.atomic():
        Generation.objects.filter(pk=generation.pk).update(deleted_at=timezone.now())
        Media.objects.filter(generation=generation).update(is_public=False)


def media_set_public(*, user: User, media_id: uuid.UUID | str, is_public: bool) -> Media:
    media = Media.objects.filter(pk=media_id, user=user).first()
    if media is None:
        raise NotFound("Image not found.")
    was_public, media.is_public = media.is_public, bool(is_public)
    media.save(update_fields=["is_public"])
    if was_public and not media.is_public:
        storage.media_unpublish(media)  # leaked or cached public addresses stop working
    return media


def media_delete(*, user: User, media_id: uuid.UUID | str) -> None:
    """Delete an image for good: the row, and the stored file when we hold it locally."""
    media = Media.objects.filter(pk=media_id, user=user).first()
    if media is None:
        raise NotFound("Image not found.")
    storage_key = media.storage_key
    in_cloudinary = media.persisted and bool(storage_key) and persistence.is_cloudinary_key(storage_key)
    persisted_locally = media.persisted and bool(storage_key) and not in_cloudinary
    media.delete()
    if persisted_locally:
        transaction.on_commit(partial(_discard, storage_key))
    if in_cloudinary:
        transaction.on_commit(partial(_destroy_cloudinary_asset, storage_key))


def _destroy_cloudinary_asset(public_id: str) -> None:
    try:
        persistence.destroy_cloudinary_asset(public_id)
    except Exception:  # the row is gone either way; a leftover asset is only storage
        logger.exception("could not delete Cloudinary asset %s", public_id)


# --- The pipeline ---------------------------------------------------------------------------
#
# How a generation moves (the row is the job record; see models.py for the states):
#
# 1. Claim. Whoever works on a generation first claims it with a conditional UPDATE
#    that moves `next_check_at` from "due" (<= now) to "leased" (now + PIPELINE_LEASE_SECONDS).
#    Only one claimer matches the row; a task delivered twice, the poller and the task
#    racing, or two worker processes all end with one winner. When the holder is done
#    it sets `next_check_at` to when the job should be looked at next (the poll
#    interval, a backoff, or NULL when final). A crashed holder's lease simply runs
#    out and the job becomes due again: that is how work resumes after a crash.
# 2. Advance (`generation_advance`). The holder looks at the newest attempt and does
#    the one thing that moves the job on: submit the next model, re-submit an attempt
#    that never got a request id, check fal's status (recording queue position and
#    logs), fetch and store the result, or fail over to the next model.
# 3. Every state change is itself a conditional UPDATE on the current status
#    (attempt: submitting/queued/running → succeeded/failed/canceled; generation:
#    running → succeeded/failed; queued/running → canceled), so a webhook, a poll and a
#    cancel that overlap change each thing once. Money follows the winning transition
#    only, and the ledger refuses a second settlement anyway.
#
# Nothing waits for a generation to finish: each step is one short call to fal.
# Completion is noticed by the worker's poller (every FAL_POLL_INTERVAL_SECONDS) or
# by fal's webhook, whichever comes first.

GenerationId = uuid.UUID | str
MediaId = uuid.UUID | str
IN_FLIGHT = (Attempt.Status.SUBMITTING, Attempt.Status.QUEUED, Attempt.Status.RUNNING)
URL_MAX_LENGTH = Media._meta.get_field("url").max_length or 1000
MAX_LOG_LINES = 200


def _provider(request_id: str = "") -> Provider:
    return get_provider(request_id)


def _lease_until(now: dt.datetime | None = None) -> dt.datetime:
    return (now or timezone.now()) + dt.timedelta(seconds=settings.PIPELINE_LEASE_SECONDS)


def _next_poll(now: dt.datetime | None = None, *, seconds: float | None = None) -> dt.datetime:
    interval = settings.FAL_POLL_INTERVAL_SECONDS if seconds is None else seconds
    return (now or timezone.now()) + dt.timedelta(seconds=interval)


def generation_claim_due(*, limit: int, now: dt.datetime | None = None) -> list[uuid.UUID]:
    """Claim up to `limit` active generations whose next check is due, oldest due first.

    On PostgreSQL the rows are locked with SKIP LOCKED while the lease is written, so
    two workers claiming at once take disjoint sets. SQLite ignores FOR UPDATE but
    runs every writing transaction under one lock (BEGIN IMMEDIATE), which gives the
    same result.
    """
    now = now or timezone.now()
    with transaction.atomic():
        ids = list(
            Generation.objects.filter(status__in=Generation.ACTIVE_STATUSES, next_check_at__lte=now)
            .order_by("next_check_at")
            .select_for_update(skip_locked=True)
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            Generation.objects.filter(pk__in=ids).update(next_check_at=_lease_until(now))
    return ids


def generation_claim(*, generation_id: GenerationId, statuses: tuple[str, ...] = Generation.ACTIVE_STATUSES) -> bool:
    """Claim one generation if it is due and in one of `statuses`. True when we hold it."""
    now = timezone.now()
    claimed = Generation.objects.filter(pk=generation_id, status__in=statuses, next_check_at__lte=now).update(
        next_check_at=_lease_until(now)
    )
    return bool(claimed)


def generation_release(*, generation_id: GenerationId, seconds: float | None = None) -> None:
    """Hand a claimed generation back, due again in `seconds` (default: the poll interval)."""
    Generation.objects.filter(pk=generation_id, status__in=Generation.ACTIVE_STATUSES).update(
        next_check_at=_next_poll(seconds=seconds)
    )


def generation_submit(*, generation_id: GenerationId) -> None:
    """Submit one queued generation to the first model of its chain, now.

    The poller does this for every due queued generation; this is the same for one
    (tests, a shell). Does nothing if the generation is no longer queued or someone
    already holds it, so calling it twice, or racing the poller, submits once.
    """
    if generation_claim(generation_id=generation_id, statuses=(Generation.Status.QUEUED,)):
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
    generation_record_finished(finished=[result for result in results if isinstance(result, Finished)])
    return len(ids)


def generation_poll_batch(
    *, generation_ids: Sequence[GenerationId], executor: Executor | None = None
) -> list[Future[Finished | None]]:
    """Move a batch of claimed generations on. Returns the follow-up work still running;
    a future whose result is a `Finished` job is for the caller to record
    (`generation_record_finished`), together with others.

    Most due jobs are simply waiting in fal's queue, so they are handled as a batch:
    one query loads their attempts, their statuses are fetched concurrently, and every
    job whose status did not change (or only its place in fal's queue) is rescheduled
    with a single UPDATE. New generations are started together (`_start_queued`). The
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
        statuses = [_fetch_status(attempt) for attempt in attempts]
    else:
        statuses = list(executor.map(_fetch_status, attempts))
    unchanged = []
    # The rest are loaded together: mostly new generations, started together (their
    # submissions to fal follow on the executor), and a few to advance one by one.
    others = Generation.objects.in_bulk([gid for gid in generation_ids if gid not in pollable])
    queued = [generation for generation in others.values() if generation.status == Generation.Status.QUEUED]
    to_advance = [generation for generation in others.values() if generation.status != Generation.Status.QUEUED]
    submissions, not_started = _start_queued(queued)
    follow_ups: list[Any] = [
        *submissions,
        *(
            partial(generation_advance_safely, generation_id=generation.pk, generation=generation)
            for generation in [*not_started, *to_advance]
        ),
    ]
    moved: dict[uuid.UUID, int | None] = {}  # only their place in fal's queue changed
    for attempt, status in zip(attempts, statuses, strict=True):
        generation = attempt.generation
        if (
            isinstance(status, ProviderStatus)
            and status.state != ProviderState.COMPLETED
            and not _attempt_expired(attempt)
        ):
            change = _progress_change(generation, attempt, status)
            if change is None:
                unchanged.append(generation.pk)
                continue
            if change == "position":
                moved[generation.pk] = status.queue_position
                continue
        follow_ups.append(partial(_apply_status_safely, generation, attempt, status))
    interval = max(settings.FAL_POLL_INTERVAL_SECONDS, settings.FAL_POLL_MAX_INTERVAL_SECONDS)
    if unchanged:
        Generation.objects.filter(pk__in=unchanged, status=Generation.Status.RUNNING).update(
            next_check_at=_next_poll(seconds=interval)
        )
    if moved:
        Generation.objects.filter(pk__in=moved, status=Generation.Status.RUNNING).update(
            queue_position=Case(
                *(When(pk=pk, then=Value(position)) for pk, position in moved.items()), output_field=IntegerField()
            ),
            next_check_at=_next_poll(seconds=interval),
        )
    if executor is None:
        done: list[Future[Finished | None]] = []
        for work in follow_ups:
            future: Future[Finished | None] = Future()
            future.set_result(work())
            done.append(future)
        return done
    return [executor.submit(work) for work in follow_ups]


def _start_queued(generations: list[Generation]) -> tuple[list[Any], list[Generation]]:
    """Start new generations together: each gets its first attempt and moves to running,
    in one transaction for the whole batch (five statements however many there are,
    where one by one each took four).

    Returns the submissions to fal still to make (one per started generation, for the
    executor), and the generations left for the one-by-one path (`_submit_model`): those
    whose request could not be built (it records why and tries the next model) and any
    no longer queued. The attempt rows exist before fal is called, as on that path, so
    a crash resubmits from them.
    """
    prepared: list[tuple[Generation, str, dict[str, Any]]] = []
    not_started: list[Generation] = []
    for generation in generations:
        chain = list(generation.model_chain or [])
        try:
            prepared.append((generation, chain[0], _build_payload(generation, chain[0])))
        except (IndexError, ModelConfigError, OSError, ValueError):
            not_started.append(generation)
    if not prepared:
        return [], not_started
    now = timezone.now()
    try:
        with transaction.atomic():
            # Locked until the commit: a cancel either comes first (and the generation is
            # not started) or waits, and then finds the attempt to cancel with it.
            still_queued = set(
                Generation.objects.select_for_update()
                .filter(pk__in=[generation.pk for generation, _, _ in prepared], status=Generation.Status.QUEUED)
                .values_list("pk", flat=True)
            )
            started = [item for item in prepared if item[0].pk in still_queued]
            by_model: dict[str, list[uuid.UUID]] = {}
            for generation, endpoint, _ in started:
                generation.status = Generation.Status.RUNNING
                generation.started_at = now
                generation.current_model = endpoint
                generation.queue_position = None
                by_model.setdefault(endpoint, []).append(generation.pk)
            # One UPDATE per first model (usually one): bulk_update's CASE per row and
            # field cost more than the rest of the batch. Each generation's request
            # payload is stored with its "Sent to" line.
            for endpoint, ids in by_model.items():
                Generation.objects.filter(pk__in=ids).update(
                    status=Generation.Status.RUNNING, started_at=now, current_model=endpoint, queue_position=None
                )
            attempts = Attempt.objects.bulk_create(
                Attempt(
                    generation=generation,
                    position=0,
                    model=endpoint,
                    status=Attempt.Status.SUBMITTING,
                    payload=shorten_payload(payload),
                )
                for generation, endpoint, payload in started
            )
    except Exception:
        logger.exception("starting %d generations together failed; starting them one by one", len(prepared))
        if not connection.in_atomic_block:
            close_old_connections()
        return [], generations
    not_started += [generation for generation, _, _ in prepared if generation.pk not in still_queued]
    submissions = [
        partial(_submit_attempt_safely, generation, attempt, payload)
        for (generation, _, payload), attempt in zip(started, attempts, strict=True)
    ]
    return submissions, not_started


def _apply_status_safely(
    generation: Generation, attempt: Attempt, status: ProviderStatus | ProviderError
) -> Finished | None:
    try:
        return _apply_status(generation, attempt, status, finish_later=True)
    except Exception:
        logger.exception("generation %s: handling fal's answer failed; will look again shortly", generation.pk)
        _look_again_later(generation.pk)
        return None


def _submit_attempt_safely(generation: Generation, attempt: Attempt, payload: dict[str, Any]) -> None:
    try:
        _submit_attempt(generation, attempt, payload=payload)
    except Exception:
        logger.exception("generation %s: submitting failed; will look again shortly", generation.pk)
        _look_again_later(generation.pk)


def generation_advance_safely(*, generation_id: GenerationId, generation: Generation | None = None) -> None:
    """`generation_advance`, but a bug or a database hiccup only delays this one job."""
    try:
        generation_advance(generation_id=generation_id, generation=generation)
    except Exception:
        logger.exception("generation %s: advancing failed; will look again shortly", generation_id)
        _look_again_later(generation_id)


def _look_again_later(generation_id: GenerationId) -> None:
    """After an unexpected error: the job is due again in a few seconds (a bug or a
    database hiccup only delays this one job)."""
    if not connection.in_atomic_block:  # (tests run inside one transaction)
        close_old_connections()  # drops the connection if the error broke it
    try:
        generation_release(generation_id=generation_id, seconds=max(5.0, settings.FAL_POLL_INTERVAL_SECONDS))
    except Exception:
        logger.exception("generation %s: could not release", generation_id)


def generation_advance(*, generation_id: GenerationId, generation: Generation | None = None) -> None:
    """Move a claimed generation one step on. The caller holds the claim (see above).

    `generation`, read after the claim by a caller that has it already, saves a query:
    a queued generation needs nothing else to be submitted.
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
        return
    if generation.status == Generation.Status.QUEUED:
        _submit_model(generation, position=0)  # moves it to running with the first attempt
        return
    if attempt is None:
        _submit_model(generation, position=0)
    elif attempt.status == Attempt.Status.SUBMITTING:
        _submit_attempt(generation, attempt)
    elif attempt.status in (Attempt.Status.QUEUED, Attempt.Status.RUNNING):
        _check_attempt(generation, attempt)
    elif attempt.status == Attempt.Status.SUCCEEDED:
        _finish(generation, attempt)
    else:
        _submit_model(generation, position=attempt.position + 1)


# --- Submitting ------------------------------------------------------------------------------


def _submit_model(generation: Generation, *, position: int) -> None:
    """Submit model number `position` of the chain, falling over to the next on refusal."""
    chain = list(generation.model_chain or [])
    while True:
        if position >= len(chain):
            _fail_generation(generation, code="all_models_failed", message=_all_failed_message(generation))
            return
        endpoint = chain[position]
        try:
            payload = _build_payload(generation, endpoint)
        except (ModelConfigError, OSError, ValueError) as exc:
            Attempt.objects.create(
                generation=generation,
                position=position,
                model=endpoint,
                status=Attempt.Status.FAILED,
                error=f"Could not build the request: {exc}",
                finished_at=timezone.now(),
            )
            _log(generation, f"{_label(endpoint)} could not be asked: {exc}", level="error")
            position += 1
            continue
        logged = shorten_payload(payload)
        with transaction.atomic():
            # The attempt row exists before fal is called: a crash after fal accepted
            # the job but before we stored its id leaves a `submitting` attempt, which
            # the next claimer re-submits.
            attempt = Attempt.objects.create(
                generation=generation,
                position=position,
                model=endpoint,
                status=Attempt.Status.SUBMITTING,
                payload=logged,
            )
            # queued → running happens here, with the first attempt, in one UPDATE.
            started = {"status": Generation.Status.RUNNING, "started_at": timezone.now()}
            still_running = Generation.objects.filter(pk=generation.pk, status__in=Generation.ACTIVE_STATUSES).update(
                current_model=endpoint,
                request_payload=logged,
                queue_position=None,
                **(started if generation.status == Generation.Status.QUEUED else {}),
            )
            if not still_running:  # canceled meanwhile
                transaction.set_rollback(True)
                return
            generation.status = Generation.Status.RUNNING
        if _submit_attempt(generation, attempt, payload=payload, fall_over=False):
            return
        latest = Attempt.objects.get(pk=attempt.pk)
        if latest.status != Attempt.Status.FAILED:
            return  # transient trouble: the attempt waits for its retry
        position += 1


def _submit_attempt(
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
            payload = _build_payload(generation, attempt.model)
        except (ModelConfigError, OSError, ValueError) as exc:
            _fail_attempt_then_next(generation, attempt, f"Could not build the request: {exc}")
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
    provider = _provider()
    try:
        request_id = provider.submit(attempt.model, payload, webhook_url, kind=generation.kind)
    except ProviderError as exc:
        if exc.permanent or _attempt_expired(attempt):
            if fall_over:
                _fail_attempt_then_next(generation, attempt, exc.message)
            else:
                _fail_attempt(generation, attempt, exc.message)
            return False
        waited = (timezone.now() - attempt.started_at).total_seconds()
        Attempt.objects.filter(pk=attempt.pk, status=Attempt.Status.SUBMITTING).update(error=exc.message[:2000])
        _log(generation, f"{_label(attempt.model)} is busy ({exc.message}); trying again shortly", level="warning")
        generation_release(generation_id=generation.pk, seconds=min(30.0, max(2.0, waited)))
        return False
    # Stored right away: from here on a crash resumes from this id instead of paying twice.
    stored = Attempt.objects.filter(pk=attempt.pk, status=Attempt.Status.SUBMITTING).update(
        fal_job_id=request_id, status=Attempt.Status.QUEUED, error=""
    )
    if not stored:
        # The attempt was canceled while we were submitting: stop the job at fal too.
        _cancel_at_provider(attempt.model, request_id)
        return True
    logger.info("generation %s: %s accepted it as %s", generation.pk, attempt.model, request_id)
    # (Canceled meanwhile: the cancel has logged the end; nothing to add.)
    _log(
        generation,
        f"Sent to {_label(attempt.model)}",
        release=True,
        only_if=Generation.ACTIVE_STATUSES,
        request_payload=attempt.payload,  # the last request, for staff
    )
    return True


def _build_payload(generation: Generation, endpoint: str) -> dict[str, Any]:
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
    """What fal fetches the photo from: its public storage URL, or a data URI of it."""
    name = generation.source_image.name
    if not name:
        raise ValueError("the generation has no stored photo")
    if settings.STORAGE_PUBLIC_URLS:
        return default_storage.url(name)
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


# --- Checking ----------------------------------------------------------------------------------


def _attempt_expired(attempt: Attempt) -> bool:
    return (timezone.now() - attempt.started_at).total_seconds() > settings.FAL_ATTEMPT_TIMEOUT_SECONDS


def _check_attempt(generation: Generation, attempt: Attempt) -> None:
    _apply_status(generation, attempt, _fetch_status(attempt))


def _fetch_status(attempt: Attempt) -> ProviderStatus | ProviderError:
    try:
        return _provider(attempt.fal_job_id).status(attempt.model, attempt.fal_job_id)
    except ProviderError as exc:
        return exc


def _apply_status(
    generation: Generation, attempt: Attempt, status: ProviderStatus | ProviderError, *, finish_later: bool = False
) -> Finished | None:
    """Act on what fal said about an attempt: progress, completion, error, or no answer.

    A completed job's images are copied here; with `finish_later` the finished job is
    returned for the caller to record with others (`generation_record_finished`)."""
    if isinstance(status, ProviderError):
        exc = status
        if exc.permanent:
            _fail_attempt_then_next(generation, attempt, exc.message)
        elif _attempt_expired(attempt):
            _time_out(generation, attempt)
        else:
            logger.warning("generation %s: status check failed (%s)", generation.pk, exc.message)
            generation_release(generation_id=generation.pk, seconds=2 * settings.FAL_POLL_INTERVAL_SECONDS)
        return None
    if status.state == ProviderState.COMPLETED:
        if status.error:
            _fail_attempt_then_next(generation, attempt, f"fal reported an error: {status.error}")
            return None
        try:
            data = _provider(attempt.fal_job_id).result(attempt.model, attempt.fal_job_id)
        except ProviderError as exc:
            if exc.permanent:
                _fail_attempt_then_next(generation, attempt, exc.message)
            else:
                generation_release(generation_id=generation.pk, seconds=2 * settings.FAL_POLL_INTERVAL_SECONDS)
            return None
        finished = _copy_result(generation, attempt, data)
        if finished is not None and not finish_later:
            _record_finished([finished])
            return None
        return finished
    if _attempt_expired(attempt):
        _time_out(generation, attempt)
        return None
    _record_progress(generation, attempt, status)
    return None


def _time_out(generation: Generation, attempt: Attempt) -> None:
    """Stop an attempt that took longer than FAL_ATTEMPT_TIMEOUT_SECONDS and try the next model."""
    _cancel_at_provider(attempt.model, attempt.fal_job_id)
    _fail_attempt_then_next(generation, attempt, f"Timed out after {settings.FAL_ATTEMPT_TIMEOUT_SECONDS} s")


def _progress_change(generation: Generation, attempt: Attempt, status: ProviderStatus) -> str | None:
    """What fal's status changes: None, "position" (only the place in the queue), or "more"."""
    attempt_status = Attempt.Status.QUEUED if status.state == ProviderState.IN_QUEUE else Attempt.Status.RUNNING
    if attempt.status != attempt_status or _new_provider_lines(generation, status.logs):
        return "more"
    position = status.queue_position if status.state == ProviderState.IN_QUEUE else None
    return "position" if position != generation.queue_position else None


def _record_progress(generation: Generation, attempt: Attempt, status: ProviderStatus) -> None:
    """Store queue position, state and new log lines, and schedule the next check."""
    attempt_status = Attempt.Status.QUEUED if status.state == ProviderState.IN_QUEUE else Attempt.Status.RUNNING
    if attempt.status != attempt_status:
        Attempt.objects.filter(pk=attempt.pk, status__in=IN_FLIGHT).update(status=attempt_status)
    position = status.queue_position if status.state == ProviderState.IN_QUEUE else None
    new_lines = _new_provider_lines(generation, status.logs)
    # The first check follows the submission after FAL_POLL_INTERVAL_SECONDS (quick
    # first feedback); later ones every FAL_POLL_MAX_INTERVAL_SECONDS: within the ~2 s
    # the UI promises, at half the calls a 1 s rhythm would cost a crowded queue.
    interval = max(settings.FAL_POLL_INTERVAL_SECONDS, settings.FAL_POLL_MAX_INTERVAL_SECONDS)
    changes: dict[str, Any] = {"next_check_at": _next_poll(seconds=interval)}
    if position != generation.queue_position:
        changes["queue_position"] = position
    if new_lines or (attempt.status != attempt_status and attempt_status == Attempt.Status.RUNNING):
        if attempt.status != attempt_status and attempt_status == Attempt.Status.RUNNING:
            new_lines.insert(0, _log_line(f"{_label(attempt.model)} is working on it"))
        _log(generation, lines=new_lines, only_if=(Generation.Status.RUNNING,), **changes)
    else:
        Generation.objects.filter(pk=generation.pk, status=Generation.Status.RUNNING).update(**changes)


def _new_provider_lines(generation: Generation, logs: list[dict[str, Any]]) -> list[dict[str, str]]:
    seen = {(line.get("message"), line.get("timestamp")) for line in generation.logs or []}
    lines = []
    for entry in logs or []:
        message = str(entry.get("message") or "").strip()
        if not message:
            continue
        line = {
            "message": message[:500],
            "level": str(entry.get("level") or "info").lower(),
            "timestamp": str(entry.get("timestamp") or timezone.now().isoformat()),
        }
        if (line["message"], line["timestamp"]) not in seen:
            seen.add((line["message"], line["timestamp"]))
            lines.append(line)
    return lines


# --- Completing ---------------------------------------------------------------------------------


def _usable_outputs(outputs: list[OutputImage]) -> list[OutputImage]:
    """Outputs we can store and show: http(s) URLs (or our own storage's, for the offline
    provider) that fit the column. Anything else (javascript:, data:, file:, a URL longer
    than 1000 characters) counts as no image at all."""
    return [output for output in outputs if len(output.url) <= URL_MAX_LENGTH and not result_urls.refusal(output.url)]


def _finished_line(attempt: Attempt, count: int) -> dict[str, str]:
    return _log_line(f"{_label(attempt.model)} finished: {count} image{'s' if count != 1 else ''}; saving")


def _record_result(generation: Generation, attempt: Attempt, data: Any) -> bool:
    """Turn a finished attempt's output (a webhook's) into Media rows, still at fal's URLs;
    the worker then saves them (`_finish`). False if there was nothing to keep.

    Only one caller wins the attempt's running → succeeded transition; a duplicate
    (webhook and poller both holding the result) returns False having changed nothing.
    """
    outputs = _usable_outputs(ModelSpec.read_output(data))
    if not outputs:
        _fail_attempt_then_next(generation, attempt, "The model answered without a usable image")
        return False
    now = timezone.now()
    with transaction.atomic():
        won = Attempt.objects.filter(pk=attempt.pk, status__in=IN_FLIGHT).update(
            status=Attempt.Status.SUCCEEDED, finished_at=now, error=""
        )
        if not won:
            return False
        still_running = _log(
            generation,
            lines=[_finished_line(attempt, len(outputs))],
            only_if=(Generation.Status.RUNNING,),
            queue_position=None,
        )
        if not still_running:
            transaction.set_rollback(True)  # canceled or finished meanwhile: keep nothing
            return False
        # ignore_conflicts: rows left by an earlier, interrupted completion stay as they are.
        Media.objects.bulk_create(
            [
                Media(
                    generation=generation,
                    index=index,
                    user_id=generation.user_id,
                    fal_job_id=attempt.fal_job_id,
                    model=attempt.model,
                    url=output.url,
                    original_url=output.url,
                    width=output.width,
                    height=output.height,
                    content_type=output.content_type,
                    is_public=generation.is_public,
                )
                for index, output in enumerate(outputs)
            ],
            ignore_conflicts=True,
        )
    return True


@dataclass
class Finished:
    """A job fal finished whose images are copied, waiting to be recorded."""

    generation: Generation
    attempt: Attempt
    lines: list[dict[str, str]]
    kept: list[tuple[int, OutputImage, persistence.Copy]]


def _copy_result(generation: Generation, attempt: Attempt, data: Any) -> Finished | None:
    """Copy a finished attempt's images somewhere durable, writing no row yet.

    The images are copied before anything is written, so that the attempt's success,
    the Media rows, the generation's success and the capture of its credits can be one
    transaction (`_record_finished`). A crash before it leaves the attempt in flight and
    nothing charged: the next check copies again onto the same names (both stores
    overwrite). None when there is nothing to record: no usable image (the next model
    is tried), or every image already gone at fal.
    """
    outputs = _usable_outputs(ModelSpec.read_output(data))
    if not outputs:
        _fail_attempt_then_next(generation, attempt, "The model answered without a usable image")
        return None
    copies = [
        persistence.save_copy(
            output.url,
            public_id=persistence.public_id(generation.kind, generation.pk, index),
            content_type=output.content_type,
        )
        for index, output in enumerate(outputs)
    ]
    kept = [(index, output, copy) for index, (output, copy) in enumerate(zip(outputs, copies, strict=True))
            if copy.outcome != persistence.Outcome.GONE]  # fmt: skip
    if not kept:
        # Every image vanished before we could keep a copy: nothing to show, so nothing
        # to charge for. The next model tries.
        _result_gone(generation, attempt, [])
        return None
    return Finished(generation, attempt, [_finished_line(attempt, len(outputs))], kept)


def generation_record_finished(*, finished: Sequence[Finished]) -> None:
    """Record finished jobs (their images already copied) together: each attempt
    succeeded, its Media rows, the generation succeeded and its credits captured.

    One transaction of about ten statements for the whole batch; one by one, each job
    took as many. If the batch fails (a bug, a database hiccup), each job is recorded on
    its own, so one bad job delays only itself.
    """
    if not finished:
        return
    try:
        _record_finished(list(finished))
        return
    except Exception:
        if len(finished) == 1:
            logger.exception(
                "generation %s: recording its result failed; will look again shortly", finished[0].generation.pk
            )
            _look_again_later(finished[0].generation.pk)
            return
        logger.exception("recording %d finished generations together failed; recording them one by one", len(finished))
        if not connection.in_atomic_block:
            close_old_connections()
    for item in finished:
        generation_record_finished(finished=[item])


def _record_finished(items: list[Finished]) -> None:
    now = timezone.now()
    with transaction.atomic():
        # Attempts first, then generations, like every other writer of both (webhook,
        # one-by-one completion), so none of them waits on the other in a circle.
        in_flight = set(
            Attempt.objects.select_for_update()
            .filter(pk__in=[item.attempt.pk for item in items], status__in=IN_FLIGHT)
            .values_list("pk", flat=True)
        )
        running = set(
            Generation.objects.select_for_update()
            .filter(pk__in=[item.generation.pk for item in items if item.attempt.pk in in_flight])
            .filter(status=Generation.Status.RUNNING)
            .values_list("pk", flat=True)
        ) if in_flight else set()  # fmt: skip
        winners = [item for item in items if item.attempt.pk in in_flight and item.generation.pk in running]
        won = {item.attempt.pk for item in winners}
        if winners:
            Attempt.objects.filter(pk__in=[item.attempt.pk for item in winners]).update(
                status=Attempt.Status.SUCCEEDED, finished_at=now, error=""
            )
            # The log lines differ only by model and image count: one UPDATE per kind.
            by_lines: dict[tuple[str, ...], tuple[list[dict[str, str]], list[uuid.UUID]]] = {}
            for item in winners:
                key = tuple(line["message"] for line in item.lines)
                by_lines.setdefault(key, (item.lines, []))[1].append(item.generation.pk)
            for lines, ids in by_lines.values():
                Generation.objects.filter(pk__in=ids).update(
                    logs=AppendLogLines("logs", [*lines, _log_line("Done")], keep=MAX_LOG_LINES),
                    status=Generation.Status.SUCCEEDED,
                    completed_at=now,
                    next_check_at=None,
                    queue_position=None,
                    error_code="",
                    error_message="",
                )
            media = [
                _media_for(item.generation, item.attempt, index, output, copy)
                for item in winners
                for index, output, copy in item.kept
            ]
            # ignore_conflicts: rows left by an earlier, interrupted completion stay as they are.
            Media.objects.bulk_create(media, ignore_conflicts=True)
            ledger.capture_many(generations=[item.generation for item in winners])
            copies = [copy for item in winners for _, _, copy in item.kept]
            for row, copy in zip(media, copies, strict=True):
                if copy.outcome == persistence.Outcome.RETRY:
                    transaction.on_commit(partial(_schedule_persist_retry, row.pk, attempts=1))
    for item in winners:
        item.generation.status = Generation.Status.SUCCEEDED
        logger.info("generation %s succeeded with %s", item.generation.pk, item.attempt.model)
    for item in items:
        if item.attempt.pk in won:
            continue
        # Canceled meanwhile: nobody will point to these copies. But when another writer
        # (a webhook) recorded this attempt's result, they are its images too, under the
        # same names: they stay.
        if not Attempt.objects.filter(pk=item.attempt.pk, status=Attempt.Status.SUCCEEDED).exists():
            for _, _, copy in item.kept:
                persistence.discard_copy(copy)


def _media_for(
    generation: Generation, attempt: Attempt, index: int, output: OutputImage, copy: persistence.Copy
) -> Media:
    persisted = copy.outcome == persistence.Outcome.PERSISTED
    return Media(
        generation=generation,
        index=index,
        user_id=generation.user_id,
        fal_job_id=attempt.fal_job_id,
        model=attempt.model,
        # Until a retry saves it, an image that could not be copied yet is shown from fal.
        url=copy.url if persisted else output.url,
        original_url=output.url,
        storage_key=copy.key,
        width=output.width or copy.width,
        height=output.height or copy.height,
        content_type=output.content_type,
        is_public=generation.is_public,
        persisted=persisted,
        persist_attempts=1,
        persist_error=copy.error,
    )


def _finish(generation: Generation, attempt: Attempt) -> None:
    """Save the images durably, then mark the generation succeeded and capture its credits.

    An image that cannot be saved yet keeps fal's URL (`persisted=False`) and gets a
    retry task; the generation succeeds anyway: the user has the image now.
    """
    retry, gone = [], []
    for media in Media.objects.filter(generation=generation, persisted=False).select_related("generation"):
        outcome = persistence.persist(media)
        if outcome == persistence.Outcome.RETRY:
            retry.append(media.pk)
        elif outcome == persistence.Outcome.GONE:
            gone.append(media.pk)
    if gone and not Media.objects.filter(generation=generation).exclude(pk__in=gone).exists():
        # Every image vanished before we could keep a copy: nothing to show, so nothing
        # to charge for. Drop the dead links and let the next model try.
        _result_gone(generation, attempt, gone)
        return
    if gone:
        Media.objects.filter(pk__in=gone).delete()  # dead links help nobody; the others stay
    with transaction.atomic():
        done = _log(
            generation,
            "Done",
            only_if=(Generation.Status.RUNNING,),
            status=Generation.Status.SUCCEEDED,
            completed_at=timezone.now(),
            next_check_at=None,
            queue_position=None,
            error_code="",
            error_message="",
        )
        if done:
            ledger.capture(generation=generation)
            for media_id in retry:
                transaction.on_commit(partial(_schedule_persist_retry, media_id, attempts=1))
    if done:
        logger.info("generation %s succeeded with %s", generation.pk, attempt.model)


def _result_gone(generation: Generation, attempt: Attempt, media_ids: list[Any]) -> None:
    """Fail an attempt whose images were all gone before we kept a copy; the next model tries."""
    with transaction.atomic():
        Media.objects.filter(pk__in=media_ids).delete()
        reopened = Attempt.objects.filter(pk=attempt.pk, status__in=(Attempt.Status.SUCCEEDED, *IN_FLIGHT)).update(
            status=Attempt.Status.FAILED,
            error="The result images were already gone when we fetched them",
            finished_at=timezone.now(),
        )
    if reopened and Generation.objects.filter(pk=generation.pk, status=Generation.Status.RUNNING).exists():
        message = "its images were already gone when we fetched them"
        _log(generation, f"{_label(attempt.model)} finished, but {message}", level="warning")
        _submit_model(generation, position=attempt.position + 1)


# --- Failing -------------------------------------------------------------------------------------


def _fail_attempt(generation: Generation, attempt: Attempt, message: str) -> bool:
    """Fail one in-flight attempt. True for the caller that actually failed it."""
    failed = Attempt.objects.filter(pk=attempt.pk, status__in=IN_FLIGHT).update(
        status=Attempt.Status.FAILED, error=message[:2000], finished_at=timezone.now()
    )
    if not failed:
        return False
    chain = list(generation.model_chain or [])
    following = chain[attempt.position + 1] if attempt.position + 1 < len(chain) else None
    then = f"; trying {_label(following)}" if following else ""
    _log(generation, f"{_label(attempt.model)} failed: {message}{then}", level="warning")
    logger.warning("generation %s: %s failed: %s", generation.pk, attempt.model, message)
    return True


def _fail_attempt_then_next(generation: Generation, attempt: Attempt, message: str) -> None:
    """Fail the attempt and submit the next model of the chain (the caller holds the claim)."""
    if _fail_attempt(generation, attempt, message):
        _submit_model(generation, position=attempt.position + 1)


def _fail_generation(generation: Generation, *, code: str, message: str) -> bool:
    """Mark an active generation failed and refund it, both exactly once."""
    with transaction.atomic():
        failed = Generation.objects.filter(pk=generation.pk, status__in=Generation.ACTIVE_STATUSES).update(
            status=Generation.Status.FAILED,
            error_code=code,
            error_message=message[:2000],
            completed_at=timezone.now(),
            next_check_at=None,
            queue_position=None,
        )
        if failed:
            Attempt.objects.filter(generation=generation, status__in=IN_FLIGHT).update(
                status=Attempt.Status.FAILED, error=message[:2000], finished_at=timezone.now()
            )
            ledger.refund(generation=generation, note=code)
    if failed:
        _log(generation, message, level="error")
        logger.warning("generation %s failed (%s): %s", generation.pk, code, message)
    return bool(failed)


def _all_failed_message(generation: Generation) -> str:
    failures = [
        f"{_label(a.model)}: {a.error or a.status}"
        for a in Attempt.objects.filter(generation=generation).order_by("started_at")
        if a.status == Attempt.Status.FAILED
    ]
    detail = "; ".join(failures[-len(generation.model_chain or []) or None :])
    return (
        "Every model for this style failed, so nothing was made and your "
        f"{generation.cost} credits were refunded." + (f" ({detail})" if detail else "")
    )


def _cancel_at_provider(endpoint: str, request_id: str) -> None:
    if not request_id:
        return
    try:
        _provider(request_id).cancel(endpoint, request_id)
    except ProviderError as exc:
        logger.warning("could not cancel %s at the provider: %s", request_id, exc.message)


# --- Logs --------------------------------------------------------------------------------------


def _label(endpoint: str | None) -> str:
    if not endpoint:
        return "the model"
    spec = MODELS.get(endpoint)
    return spec.label if spec else endpoint


def _log(
    generation: Generation,
    message: str | None = None,
    *,
    level: str = "info",
    lines: list[dict[str, str]] | None = None,
    release: bool = False,
    only_if: tuple[str, ...] | None = None,
    **changes: Any,
) -> bool:
    """Append log lines (the UI shows them) and apply `changes`, in one UPDATE.

    The database appends the lines (`AppendLogLines`), so two writers never drop each
    other's lines, with no read or lock first. With `only_if`, nothing happens unless
    the generation's status is one of those (a state transition and its log line in
    one write); returns whether it happened. `release=True` also schedules the next check.
    """
    new = list(lines or [])
    if message:
        new.append(_log_line(message, level))
    if release:
        changes["next_check_at"] = _next_poll()
    active_only = only_if is not None and set(only_if) <= set(Generation.ACTIVE_STATUSES)
    if "next_check_at" in changes and not active_only:
        # A generation that became final meanwhile keeps no next check.
        changes["next_check_at"] = Case(
            When(status__in=Generation.ACTIVE_STATUSES, then=Value(changes["next_check_at"])),
            default=F("next_check_at"),
            output_field=DateTimeField(),
        )
    rows = Generation.objects.filter(pk=generation.pk)
    if only_if is not None:
        rows = rows.filter(status__in=only_if)
    if new:
        changes["logs"] = AppendLogLines("logs", new, keep=MAX_LOG_LINES)
    if not changes:
        return rows.exists()
    updated = rows.update(**changes)
    if updated:
        generation.logs = (list(generation.logs or []) + new)[-MAX_LOG_LINES:]
    return bool(updated)


# --- Webhook, cancel and staff actions ----------------------------------------------------------


def generation_webhook(*, request_id: str, status: str, payload: Any = None, error: str | None = None) -> str:
    """Apply a verified fal webhook. Returns what happened ("completed", "failed", "duplicate", "unknown").

    OK stores the result (Media rows); the worker then saves the images and marks the
    generation succeeded within a poll interval, so no image is fetched inside the web
    request. ERROR fails the attempt; the worker submits the next model. A repeated or
    late delivery finds the attempt already settled and changes nothing.
    """
    attempt = Attempt.objects.select_related("generation").filter(fal_job_id=request_id).first()
    if attempt is None:
        logger.warning("fal webhook for unknown request %s", request_id)
        return "unknown"
    generation = attempt.generation
    if attempt.status not in IN_FLIGHT or generation.status != Generation.Status.RUNNING:
        return "duplicate"
    if status == "OK":
        if not _usable_outputs(ModelSpec.read_output(payload)):
            if _fail_attempt(generation, attempt, "The model answered without a usable image"):
                generation_release(generation_id=generation.pk, seconds=0)
            return "failed"
        if _record_result(generation, attempt, payload):
            generation_release(generation_id=generation.pk, seconds=0)
            return "completed"
        return "duplicate"
    reason = error or "fal reported an error"
    if isinstance(payload, dict) and payload.get("detail"):
        reason = f"{reason}: {str(payload['detail'])[:300]}"
    if not _fail_attempt(generation, attempt, f"fal reported an error: {reason}"):
        return "duplicate"
    # The worker submits the next model on its next round.
    generation_release(generation_id=generation.pk, seconds=0)
    return "failed"


def generation_cancel(*, generation_id: GenerationId, user: User | None = None) -> Generation:
    """Cancel a queued or running generation and refund it.

    `user=None` is staff; otherwise only the owner may cancel (others get NotFound, as
    if it did not exist). A finished generation raises InvalidTransition. fal's cancel
    endpoint is called for the attempt in flight (best effort: a job that already
    finished at fal stays finished, but we neither keep nor charge for it).
    """
    queryset = Generation.objects.filter(pk=generation_id)
    if user is not None:
        queryset = queryset.filter(user=user)
    generation = queryset.first()
    if generation is None:
        raise NotFound("Generation not found.")
    if generation.is_final:
        raise InvalidTransition(f"This generation has already {generation.status}; it can't be canceled.")
    now = timezone.now()
    with transaction.atomic():
        canceled = Generation.objects.filter(pk=generation.pk, status__in=Generation.ACTIVE_STATUSES).update(
            status=Generation.Status.CANCELED,
            completed_at=now,
            next_check_at=None,
            queue_position=None,
            error_code="canceled",
            error_message="Canceled" + (" by staff" if user is None else ""),
        )
        if not canceled:
            raise InvalidTransition("This generation has just finished; it can't be canceled.")
        in_flight = list(Attempt.objects.filter(generation=generation, status__in=IN_FLIGHT))
        Attempt.objects.filter(pk__in=[a.pk for a in in_flight]).update(status=Attempt.Status.CANCELED, finished_at=now)
        # Images of a result that raced the cancel are not kept: the user was refunded.
        Media.objects.filter(generation=generation).delete()
        ledger.refund(generation=generation, note="canceled")
    _log(generation, "Canceled; your credits were refunded")
    for attempt in in_flight:
        _cancel_at_provider(attempt.model, attempt.fal_job_id)
    generation.refresh_from_db()
    return generation


def generation_retry(*, generation_id: GenerationId, by: User | None = None) -> Generation:
    """Staff: restart a failed or canceled generation from the first model, reserving its cost again."""
    generation = Generation.objects.filter(pk=generation_id).first()
    if generation is None:
        raise NotFound("Generation not found.")
    retryable = (Generation.Status.FAILED, Generation.Status.CANCELED)
    if generation.status not in retryable:
        raise InvalidTransition(f"Only failed or canceled generations can be retried; this one is {generation.status}.")
    with transaction.atomic():
        restarted = Generation.objects.filter(pk=generation.pk, status__in=retryable).update(
            status=Generation.Status.QUEUED,
            error_code="",
            error_message="",
            completed_at=None,
            started_at=None,
            queue_position=None,
            current_model="",
            next_check_at=timezone.now(),
        )
        if not restarted:
            raise InvalidTransition("This generation changed meanwhile; reload and try again.")
        # Raises InsufficientCredits (rolling the restart back) when the owner is broke.
        ledger.reserve(user=generation.user, generation=generation, amount=generation.cost)
    # The generation's log is shown to its owner: name no staff member there, only in the server log.
    _log(generation, "Retried by staff; starting again with the first model")
    logger.info("generation %s retried by staff user %s", generation.pk, getattr(by, "pk", None))
    generation.refresh_from_db()
    return generation


def generation_refund(*, generation_id: GenerationId, by: User | None = None) -> CreditEntry:
    """Staff: refund an unsettled generation through the ledger, failing it first if active.

    Raises AlreadySettled when its credits were already refunded or captured.
    """
    generation = Generation.objects.filter(pk=generation_id).first()
    if generation is None:
        raise NotFound("Generation not found.")
    in_flight: list[Attempt] = []
    with transaction.atomic():
        if generation.status in Generation.ACTIVE_STATUSES:
            in_flight = list(Attempt.objects.filter(generation=generation, status__in=IN_FLIGHT))
            Generation.objects.filter(pk=generation.pk, status__in=Generation.ACTIVE_STATUSES).update(
                status=Generation.Status.FAILED,
                error_code="refunded_by_staff",
                error_message="Stopped and refunded by staff.",
                completed_at=timezone.now(),
                next_check_at=None,
                queue_position=None,
            )
            Attempt.objects.filter(pk__in=[a.pk for a in in_flight]).update(
                status=Attempt.Status.CANCELED, finished_at=timezone.now()
            )
        entry = ledger.refund(generation=generation, note="refunded by staff", by=by)
        if entry is None:
            raise AlreadySettled()
    for attempt in in_flight:
        _cancel_at_provider(attempt.model, attempt.fal_job_id)
    _log(generation, "Refunded by staff")
    return entry


def media_persist(*, media_id: MediaId, reschedule: bool = False) -> Media:
    """Save one image durably now (staff action, and the retry task's target).

    With `reschedule`, a failure that is worth retrying enqueues the next try with a
    doubling delay; a source that is gone stops the retries (logged as an error).
    """
    media = Media.objects.select_related("generation").filter(pk=media_id).first()
    if media is None:
        raise NotFound("Image not found.")
    outcome = persistence.persist(media)
    if outcome == persistence.Outcome.RETRY and reschedule:
        media.refresh_from_db()
        _schedule_persist_retry(media.pk, attempts=media.persist_attempts)
    media.refresh_from_db()
    return media


def _schedule_persist_retry(media_id: MediaId, *, attempts: int) -> None:
    from .tasks import media_persist_task

    delay = min(
        settings.MEDIA_PERSIST_RETRY_MAX_SECONDS, settings.MEDIA_PERSIST_RETRY_SECONDS * 2 ** max(0, attempts - 1)
    )
    run_after = timezone.now() + dt.timedelta(seconds=delay)
    media_persist_task.using(run_after=run_after).enqueue(media_id=str(media_id))


def generation_sweep(*, now: dt.datetime | None = None) -> dict[str, int]:
    """Periodic clean-up of jobs that would otherwise never move again.

    - an active generation with no next check (should not happen) is made due;
    - a generation active for longer than its whole chain could take (every attempt
      timing out, plus slack for retries) is failed and refunded, and its job at fal
      is canceled.
    Lost webhooks and jobs stuck in fal's queue need nothing here: every in-flight job
    is polled anyway, and an attempt past FAL_ATTEMPT_TIMEOUT_SECONDS is canceled and
    falls over to the next model when it is next checked. A crashed worker's claims
    expire on their own (PIPELINE_LEASE_SECONDS). The offline provider's day-old job
    files are removed.
    """
    now = now or timezone.now()
    made_due = Generation.objects.filter(status__in=Generation.ACTIVE_STATUSES, next_check_at__isnull=True).update(
        next_check_at=now
    )
    expired = 0
    slack = settings.PIPELINE_LEASE_SECONDS + 120
    for generation in Generation.objects.filter(
        status__in=Generation.ACTIVE_STATUSES,
        created_at__lt=now - dt.timedelta(seconds=settings.FAL_ATTEMPT_TIMEOUT_SECONDS + slack),
    ).iterator():
        bound = len(generation.model_chain or [1]) * (settings.FAL_ATTEMPT_TIMEOUT_SECONDS + slack)
        if (now - generation.created_at).total_seconds() <= bound:
            continue
        in_flight = list(Attempt.objects.filter(generation=generation, status__in=IN_FLIGHT))
        message = (
            f"This generation took longer than {bound // 60} minutes and was stopped; "
            f"your {generation.cost} credits were refunded."
        )
        if _fail_generation(generation, code="timeout", message=message):
            expired += 1
            for attempt in in_flight:
                _cancel_at_provider(attempt.model, attempt.fal_job_id)
    LocalProvider.prune()
    return {"made_due": made_due, "expired": expired}


def worker_heartbeat(*, worker_id: str, started_at: dt.datetime) -> None:
    """Record that a worker is alive (health checks read the newest)."""
    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(
        worker_id=worker_id,
        defaults={"last_seen_at": now, "hostname": socket.gethostname()[:200], "pid": os.getpid()},
        create_defaults={
            "last_seen_at": now,
            "started_at": started_at,
            "hostname": socket.gethostname()[:200],
            "pid": os.getpid(),
        },
    )
