"""Checking: asking fal where a job stands and acting on the answer.

Progress (queue position, fal's log lines) is stored as it changes; a completed job's
images are copied (`finish.copy_result`); an error or a job past its time bound fails
the attempt and falls over to the next model.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.utils import timezone

from ..exceptions import ProviderError
from ..models import Attempt, Generation
from ..providers import ProviderState, ProviderStatus, get_provider
from .claim import generation_release, look_again_later, next_poll, still_held
from .finish import Finished, copy_result, generations_finish
from .log import generation_log, label, log_line, working_on
from .pace import next_check_delay
from .stop import IN_FLIGHT, cancel_at_provider
from .submit import attempt_expired, fail_attempt_then_next

logger = logging.getLogger("generation")


def fetch_status(attempt: Attempt) -> ProviderStatus | ProviderError:
    try:
        return get_provider(attempt.fal_job_id).status(attempt.model, attempt.fal_job_id)
    except ProviderError as exc:
        return exc


def check_attempt(generation: Generation, attempt: Attempt) -> None:
    apply_status(generation, attempt, fetch_status(attempt))


def apply_status_safely(
    generation: Generation, attempt: Attempt, status: ProviderStatus | ProviderError
) -> Finished | None:
    with working_on(generation):
        try:
            return apply_status(generation, attempt, status, finish_later=True)
        except Exception:
            logger.exception("generation %s: handling fal's answer failed; will look again shortly", generation.pk)
            look_again_later(generation.pk)
            return None


def apply_status(
    generation: Generation, attempt: Attempt, status: ProviderStatus | ProviderError, *, finish_later: bool = False
) -> Finished | None:
    """Act on what fal said about an attempt: progress, completion, error, or no answer.

    A completed job's images are copied here; with `finish_later` the finished job is
    returned for the caller to record with others (`generations_finish`)."""
    if isinstance(status, ProviderError):
        exc = status
        if exc.permanent:
            fail_attempt_then_next(generation, attempt, exc.message)
        elif attempt_expired(attempt):
            time_out(generation, attempt)
        else:
            logger.warning("generation %s: status check failed (%s)", generation.pk, exc.message)
            generation_release(
                generation_id=generation.pk, seconds=2 * settings.FAL_POLL_INTERVAL_SECONDS, held=generation
            )
        return None
    if status.state == ProviderState.COMPLETED:
        seen_at = timezone.now()  # when we learned it (pace.py learns models' times from it)
        if status.error:
            fail_attempt_then_next(generation, attempt, f"fal reported an error: {status.error}")
            return None
        try:
            data = get_provider(attempt.fal_job_id).result(attempt.model, attempt.fal_job_id)
        except ProviderError as exc:
            if exc.permanent:
                fail_attempt_then_next(generation, attempt, exc.message)
            else:
                generation_release(
                    generation_id=generation.pk, seconds=2 * settings.FAL_POLL_INTERVAL_SECONDS, held=generation
                )
            return None
        finished = copy_result(generation, attempt, data)
        if finished is not None:
            finished.seen_at = seen_at
        if finished is not None and not finish_later:
            generations_finish(finished=[finished])
            return None
        return finished
    if attempt_expired(attempt):
        time_out(generation, attempt)
        return None
    record_progress(generation, attempt, status)
    return None


def time_out(generation: Generation, attempt: Attempt) -> None:
    """Stop an attempt that took longer than FAL_ATTEMPT_TIMEOUT_SECONDS and try the next model."""
    cancel_at_provider(attempt.model, attempt.fal_job_id)
    fail_attempt_then_next(generation, attempt, f"Timed out after {settings.FAL_ATTEMPT_TIMEOUT_SECONDS} s")


def progress_change(generation: Generation, attempt: Attempt, status: ProviderStatus) -> str | None:
    """What fal's status changes: None, "position" (only the place in the queue), or "more"."""
    attempt_status = Attempt.Status.QUEUED if status.state == ProviderState.IN_QUEUE else Attempt.Status.RUNNING
    if attempt.status != attempt_status or _new_provider_lines(generation, status.logs):
        return "more"
    position = status.queue_position if status.state == ProviderState.IN_QUEUE else None
    return "position" if position != generation.queue_position else None


def check_delay(attempt: Attempt, status: ProviderStatus) -> float:
    """Seconds until the attempt's next status check, by how long its model usually takes
    (`pace.next_check_delay`)."""
    elapsed = (timezone.now() - attempt.started_at).total_seconds()
    return next_check_delay(model=attempt.model, state=status.state, elapsed=elapsed)


def record_progress(generation: Generation, attempt: Attempt, status: ProviderStatus) -> None:
    """Store queue position, state and new log lines, and schedule the next check.

    Only while the caller still holds its claim (`claim.still_held`): an answer that
    arrived after the claim ran out is stale, and the round holding the job now has its own.
    """
    attempt_status = Attempt.Status.QUEUED if status.state == ProviderState.IN_QUEUE else Attempt.Status.RUNNING
    position = status.queue_position if status.state == ProviderState.IN_QUEUE else None
    new_lines = _new_provider_lines(generation, status.logs)
    changes: dict[str, Any] = {}
    if position != generation.queue_position:
        changes["queue_position"] = position
    next_check = next_poll(seconds=check_delay(attempt, status))
    if new_lines or (attempt.status != attempt_status and attempt_status == Attempt.Status.RUNNING):
        if attempt.status != attempt_status and attempt_status == Attempt.Status.RUNNING:
            new_lines.insert(0, log_line(f"{label(attempt.model)} is working on it"))
        held = generation_log(
            generation,
            lines=new_lines,
            only_if=(Generation.Status.RUNNING,),
            where=still_held(generation),
            next_check_at=next_check,
            **changes,
        )
    else:
        held = bool(
            Generation.objects.filter(
                still_held(generation), pk=generation.pk, status=Generation.Status.RUNNING
            ).update(next_check_at=next_check, **changes)
        )
    # After the generation's write, which tells whether the claim still holds: a stale
    # "in the queue" would move the attempt back from running on its owner's screen.
    if held and attempt.status != attempt_status:
        Attempt.objects.filter(pk=attempt.pk, status__in=IN_FLIGHT).update(status=attempt_status)


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
