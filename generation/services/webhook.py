"""fal's webhook: store its answer and make the job due; the worker finishes it.

The webhook never finishes a generation itself. It stores what fal answered (the
attempt succeeded, its images as Media rows still at fal's URLs, or the attempt failed)
and makes the job due at once; the worker's next round copies the images and records the
success through the same `finish.generations_finish` as a result it polled, or submits the
next model. No image is fetched inside the web request.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from ..models import Attempt, Generation, Media
from ..registry import MalformedResult, ModelSpec
from .claim import generation_release, workers_wake
from .finish import finished_line, usable_outputs
from .log import generation_log
from .stop import IN_FLIGHT, fail_attempt

logger = logging.getLogger("generation")


def generation_webhook(*, request_id: str, status: str, payload: Any = None, error: str | None = None) -> str:
    """Apply a verified fal webhook. Returns what happened ("completed", "failed", "duplicate", "unknown").

    OK stores the result (Media rows); the worker then saves the images and marks the
    generation succeeded within a poll interval. ERROR fails the attempt; the worker
    submits the next model. A repeated or late delivery finds the attempt already
    settled and changes nothing.
    """
    attempt = (
        Attempt.objects.select_related("generation")
        # Its prompts, logs and payload are never read here (the model chain is: an error
        # names the next model).
        .defer(*(f"generation__{name}" for name in Generation.DETAIL_FIELDS if name != "model_chain"))
        .filter(fal_job_id=request_id)
        .first()
    )
    if attempt is None:
        logger.warning("fal webhook for unknown request %s", request_id)
        return "unknown"
    generation = attempt.generation
    if attempt.status not in IN_FLIGHT or generation.status != Generation.Status.RUNNING:
        return "duplicate"
    if status == "OK":
        if _needs_a_closer_look(payload):
            # Safety flags (or flags that can't be read): the worker fetches the result and
            # decides through the same path as a result it polled; nothing is stored here.
            generation_release(generation_id=generation.pk, seconds=0)
            return "completed"
        if not usable_outputs(enumerate(ModelSpec.read_output(payload))):
            if fail_attempt(generation, attempt, "The model answered without a usable image"):
                generation_release(generation_id=generation.pk, seconds=0)
            return "failed"
        return "completed" if _store_result(generation, attempt, payload) else "duplicate"
    reason = error or "fal reported an error"
    if isinstance(payload, dict) and payload.get("detail"):
        reason = f"{reason}: {str(payload['detail'])[:300]}"
    if not fail_attempt(generation, attempt, f"fal reported an error: {reason}"):
        return "duplicate"
    # The worker submits the next model on its next round.
    generation_release(generation_id=generation.pk, seconds=0)
    return "failed"


def _needs_a_closer_look(payload: Any) -> bool:
    try:
        return ModelSpec.read_result(payload).blocked > 0
    except MalformedResult:
        return True


def _store_result(generation: Generation, attempt: Attempt, data: Any) -> bool:
    """Store a finished attempt's answer: the attempt succeeded, its images as Media rows
    still at fal's URLs, and the job due at once, the workers woken for it. False if
    another delivery (or the poller) got there first.

    Only one caller wins the attempt's in-flight → succeeded move; a duplicate changes
    nothing. The generation stays running until the worker has copied the images.
    """
    outputs = usable_outputs(enumerate(ModelSpec.read_output(data)))
    with transaction.atomic():
        won = Attempt.objects.filter(pk=attempt.pk, status__in=IN_FLIGHT).update(
            status=Attempt.Status.SUCCEEDED, finished_at=timezone.now(), error=""
        )
        if not won:
            return False
        still_running = generation_log(
            generation,
            lines=[finished_line(attempt, len(outputs))],
            only_if=(Generation.Status.RUNNING,),
            queue_position=None,
            next_check_at=timezone.now(),  # due: the worker copies the images
        )
        if not still_running:
            transaction.set_rollback(True)  # canceled or finished meanwhile: keep nothing
            return False
        workers_wake()  # (delivered when this commits)
        # ignore_conflicts: rows left by an earlier, interrupted delivery stay as they are.
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
                for index, output in outputs
            ],
            ignore_conflicts=True,
        )
    return True
