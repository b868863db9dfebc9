"""Finishing: copying a finished job's images, then running → succeeded (one writer).

Whoever noticed that fal finished (the poller asking, or fal's webhook, which stores the
answer and makes the job due), the worker ends up here: `copy_result` (fal's answer) or
`copy_stored` (what the webhook stored) copies the images somewhere durable, writing no
row, and `generations_finish` records a whole round of finished jobs in one transaction:
attempts succeeded, Media rows, generations succeeded, credits captured.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Case, DateTimeField, Value, When
from django.utils import timezone

from credits import ledger
from stefna.db import close_old_connections_unless_in_transaction
from stefna.i18n_tags import RESULT_GONE_REASON

from .. import notify, persistence, result_urls
from ..models import AppendLogLines, Attempt, Generation, Media, StoredRemoval
from ..registry import MalformedResult, ModelSpec, OutputImage
from . import revoke
from .claim import look_again_later
from .log import MAX_LOG_LINES, about_batch, generation_log, label, log_line, log_transition, working_on
from .media import persist_retry_at
from .stop import IN_FLIGHT, RESULT_GONE, fail_attempt, generation_stop
from .submit import fail_attempt_then_next, submit_model

logger = logging.getLogger("generation")

URL_MAX_LENGTH = Media._meta.get_field("url").max_length or 1000


@dataclass
class Finished:
    """A job fal finished whose images are copied, waiting to be recorded."""

    generation: Generation
    attempt: Attempt
    lines: list[dict[str, str]]
    kept: list[tuple[int, OutputImage, persistence.Copy]]
    # Images the webhook stored whose source was already gone: their rows go.
    gone: list[int] = field(default_factory=list)
    # Images fal's safety checker withheld (never copied, never stored).
    blocked: int = 0
    # When the poller saw fal's COMPLETED: the attempt's finished_at (not the end of the
    # copy), so that models' learned times (services/pace.py) are fal's own.
    seen_at: dt.datetime | None = None


def usable_outputs(outputs: Iterable[tuple[int, OutputImage]]) -> list[tuple[int, OutputImage]]:
    """Outputs we can store and show, each with its position in fal's answer: http(s)
    URLs (or our own storage's, for the offline provider) that fit the column. Anything
    else (javascript:, data:, file:, a URL longer than 1000 characters) counts as no
    image at all. The position stays fal's, whichever path (webhook or poll) reads the
    answer, so an image's number and its copy's name never depend on the path."""
    return [
        (index, output)
        for index, output in outputs
        if len(output.url) <= URL_MAX_LENGTH and not result_urls.refusal(output.url)
    ]


def finished_line(attempt: Attempt, count: int) -> dict[str, str]:
    return log_line(f"{label(attempt.model)} finished: {count} image{'s' if count != 1 else ''}; saving")


def copy_result(generation: Generation, attempt: Attempt, data: Any) -> Finished | None:
    """Copy a finished attempt's images (fal's answer) somewhere durable, writing no row yet.

    The images are copied before anything is written, so that the attempt's success,
    the Media rows, the generation's success and the capture of its credits can be one
    transaction (`generations_finish`). A crash before it leaves the attempt in flight and
    nothing charged: the next check copies again onto the same names (both stores
    overwrite). None when there is nothing to record: no usable image or an answer that
    cannot be read safely (the next model is tried), every image withheld by fal's
    safety checker (the generation ends `content_blocked`, refunded), or every image
    already gone at fal.

    An image the safety checker flagged is never copied: fal puts a black square in
    its place, and it must not be stored, shown, charged for or made public.
    """
    try:
        result = ModelSpec.read_result(data)
    except MalformedResult as exc:
        fail_attempt_then_next(generation, attempt, f"The model's answer could not be read safely: {exc}")
        return None
    if result.images and result.blocked == len(result.images):
        _block(generation, attempt, blocked=result.blocked)
        return None
    outputs = usable_outputs(result.clean)
    if not outputs:
        fail_attempt_then_next(generation, attempt, "The model answered without a usable image")
        return None
    finished = _copy(generation, attempt, outputs, total=len(outputs))
    if finished is not None and result.blocked:
        finished.blocked = result.blocked
        finished.lines.append(log_line(withheld_message(result.blocked, len(result.images)), "warning"))
    return finished


def withheld_message(blocked: int, total: int) -> str:
    verb = "was" if blocked == 1 else "were"
    return f"{blocked} of {total} image{'s' if total != 1 else ''} {verb} withheld by the safety filter"


def _block(generation: Generation, attempt: Attempt, *, blocked: int) -> None:
    """Every image was withheld by fal's safety checker: the generation ends
    `content_blocked` and is refunded (through the one writer, `generation_stop`)."""
    Attempt.objects.filter(pk=attempt.pk).update(blocked_images=blocked)
    message = (
        f"The safety filter withheld every image {label(attempt.model)} made for this request, so there is "
        f"nothing to show and nothing was charged: your {generation.cost} credits are back. "
        "Try another photo, or describe what you want differently."
    )
    generation_stop(
        generation=generation,
        status=Generation.Status.FAILED,
        code="content_blocked",
        message=message,
        log_message=message,
        refund_note="content_blocked",
        level="warning",
        attempts_end_as=Attempt.Status.FAILED,
    )
    logger.warning("generation %s: all %d images withheld by the safety checker", generation.pk, blocked)


def copy_stored(generation: Generation, attempt: Attempt) -> Finished | None:
    """Copy the images a webhook stored (Media rows still at fal's URLs), writing no row yet.

    With no row left, the job is finished with nothing to keep: its owner deleted every
    image the webhook stored before the worker came to copy them. (A stop deletes them
    too, but then the generation is no longer running and recording changes nothing.)
    """
    stored = [
        (row.index, OutputImage(row.original_url or row.url, row.width, row.height, row.content_type))
        for row in Media.objects.filter(generation=generation, persisted=False).order_by("index")
    ]
    if not stored:
        # Recorded like any other result: the generation succeeds and its credits are
        # captured. The model ran and its images were delivered (the API lists a stored
        # image, at fal's URL, as soon as the webhook stores it, and that is where the
        # owner found it to delete); the owner deleted them, as they may any image of a
        # finished generation, which gives nothing back either. A refund
        # is for images lost on our side (media._image_lost: fal deleted them before we
        # saved a copy); refunding here would make deleting an image before its copy
        # exists a way to keep it for free (it can be saved from fal's URL meanwhile),
        # and failing the job would read as the model's failure. Left running, it held
        # a place at fal until the sweeper failed it as a timeout.
        return Finished(generation, attempt, [], kept=[])
    return _copy(generation, attempt, stored, total=len(stored), lines=False)


def _copy(
    generation: Generation, attempt: Attempt, outputs: list[tuple[int, OutputImage]], *, total: int, lines: bool = True
) -> Finished | None:
    copies = [
        persistence.save_copy(
            output.url,
            public_id=persistence.public_id(generation.kind, generation.pk, index),
            content_type=output.content_type,
        )
        for index, output in outputs
    ]
    kept = [(index, output, copy) for (index, output), copy in zip(outputs, copies, strict=True)
            if copy.outcome != persistence.Outcome.GONE]  # fmt: skip
    gone = [index for (index, _), copy in zip(outputs, copies, strict=True) if copy.outcome == persistence.Outcome.GONE]
    if not kept:
        # Every image vanished before we could keep a copy: nothing to show, so nothing
        # to charge for. The next model tries.
        result_gone(generation, attempt)
        return None
    return Finished(generation, attempt, [finished_line(attempt, total)] if lines else [], kept, gone)


def generations_finish(*, finished: Sequence[Finished]) -> None:
    """running → succeeded, for the jobs of a round: the only writer of it.

    Records finished jobs (their images already copied) together: each attempt
    succeeded, its Media rows, the generation succeeded and its credits captured, in one
    transaction for the whole batch. If the batch fails (a bug, a database hiccup), each
    job is recorded on its own, so one bad job delays only itself.
    """
    if not finished:
        return
    try:
        _record(list(finished))
        return
    except Exception:
        if len(finished) == 1:
            with working_on(finished[0].generation):
                logger.exception(
                    "generation %s: recording its result failed; will look again shortly", finished[0].generation.pk
                )
                look_again_later(finished[0].generation.pk)
            return
        logger.exception(
            "recording %d finished generations together failed; recording them one by one",
            len(finished),
            extra=about_batch([item.generation for item in finished]),
        )
        close_old_connections_unless_in_transaction()
    for item in finished:
        generations_finish(finished=[item])


def _record(items: list[Finished]) -> None:
    now = timezone.now()
    with transaction.atomic():
        # Attempts first, then generations, like every other writer of both, so none of
        # them waits on another in a circle. An attempt the webhook already marked
        # succeeded (its answer stored) is still this job's to finish.
        open_attempts = dict(
            Attempt.objects.select_for_update()
            .filter(pk__in=[item.attempt.pk for item in items], status__in=(*IN_FLIGHT, Attempt.Status.SUCCEEDED))
            .values_list("pk", "status")
        )
        running = set(
            Generation.objects.select_for_update()
            .filter(pk__in=[item.generation.pk for item in items if item.attempt.pk in open_attempts])
            .filter(status=Generation.Status.RUNNING)
            .values_list("pk", flat=True)
        ) if open_attempts else set()  # fmt: skip
        # One winner per generation: a job can be finished twice in one round, when fal's
        # webhook made it due while a status check of the same job was copying its result
        # (both copies went to the same names). Two Media rows for one image would make
        # the upsert below fail ("cannot affect row a second time").
        winners = []
        for item in items:
            if item.attempt.pk in open_attempts and item.generation.pk in running:
                winners.append(item)
                running.discard(item.generation.pk)
        won = {item.attempt.pk for item in winners}
        if winners:
            seen = {item.attempt.pk: item.seen_at for item in winners if item.seen_at is not None}
            finished_at: Any = now
            if seen:
                finished_at = Case(
                    *(When(pk=pk, then=Value(at)) for pk, at in seen.items()),
                    default=Value(now),
                    output_field=DateTimeField(),
                )
            Attempt.objects.filter(pk__in=won, status__in=IN_FLIGHT).update(
                status=Attempt.Status.SUCCEEDED, finished_at=finished_at, error=""
            )
            # The log lines differ only by model and image count: one UPDATE per kind.
            by_lines: dict[tuple[str, ...], tuple[list[dict[str, str]], list[uuid.UUID]]] = {}
            for item in winners:
                key = tuple(line["message"] for line in item.lines)
                by_lines.setdefault(key, (item.lines, []))[1].append(item.generation.pk)
            for lines, ids in by_lines.values():
                Generation.objects.filter(pk__in=ids).update(
                    logs=AppendLogLines("logs", [*lines, log_line("Done")], keep=MAX_LOG_LINES),
                    status=Generation.Status.SUCCEEDED,
                    completed_at=now,
                    next_check_at=None,
                    queue_position=None,
                    error_code="",
                    error_message="",
                )
            for item in winners:
                if item.blocked:  # counted per preset and model on the admin dashboard
                    Attempt.objects.filter(pk=item.attempt.pk).update(blocked_images=item.blocked)
                if item.gone:  # dead links help nobody; the others stay
                    Media.objects.filter(generation=item.generation, index__in=item.gone).delete()
            # An image the webhook stored (listed at fal's URL at once) and whose row is
            # gone was deleted by its owner while the worker copied it: recreating its row
            # would bring it back, and its copy is nobody's. Locked, so that a deletion
            # still to commit either goes first or waits and reads the copy's key.
            stored = [item for item in winners if open_attempts[item.attempt.pk] == Attempt.Status.SUCCEEDED]
            present = set(
                Media.objects.select_for_update()
                .filter(generation__in=[item.generation.pk for item in stored])
                .values_list("generation_id", "index")
            ) if stored else set()  # fmt: skip
            deleted = {(item.generation.pk, index) for item in stored for index, _, _ in item.kept} - present
            media = [
                _media_for(item.generation, item.attempt, index, output, copy, now=now)
                for item in winners
                for index, output, copy in item.kept
                if (item.generation.pk, index) not in deleted
            ]
            revoke.stored_removal_owe(
                objects=revoke.where_stored(
                    copy.key
                    for item in winners
                    for index, _, copy in item.kept
                    if (item.generation.pk, index) in deleted and copy.outcome == persistence.Outcome.PERSISTED
                ),
                reason=StoredRemoval.Reason.SURPLUS_COPY,
            )
            # Rows a webhook stored (at fal's URLs) become the copies'.
            Media.objects.bulk_create(
                media,
                update_conflicts=True,
                unique_fields=["generation", "index"],
                update_fields=[
                    "url",
                    "storage_key",
                    "width",
                    "height",
                    "persisted",
                    "persist_attempts",
                    "persist_error",
                    "persist_next_at",
                ],
            )
            ledger.capture_many(generations=[item.generation for item in winners])
            # Owed with the end (issue 19): a worker killed after the commit leaves it owed.
            notify.generation_notify_ended(generation_ids=[item.generation.pk for item in winners])
        _owe_losers_copies([item for item in items if item.attempt.pk not in won])
    for item in winners:
        item.generation.status = Generation.Status.SUCCEEDED
        with working_on(item.generation):
            log_transition(item.generation.pk, to=Generation.Status.SUCCEEDED, writer="generations_finish")
            logger.info("generation %s succeeded with %s", item.generation.pk, item.attempt.model)


def _owe_losers_copies(losers: list[Finished]) -> None:
    """Owe the removal of copies made by a worker that lost its generation to a stop
    (canceled, failed, swept) meanwhile: nobody will point to them. Called in the
    transaction that decided they lost, so the debt is recorded with the decision.

    The stop owed its generation's image names too, but its removal may have run
    before these copies landed (a cancel while Cloudinary was still fetching).
    Copies of a generation that succeeded (another writer recorded the same result,
    under the same names) are its images: they stay while its row points to that name
    or still waits for its copy (a retry lands on the same name). Otherwise they are
    surplus: a second copier (fal's webhook made the job due while a status check was
    copying it) can land its copy after the first recorded the success and the owner
    deleted the image, or made it private and it moved off that name; the deletion's
    removal or the move ran before this copy landed, and no row points there again.
    Copies of a generation still active (an attempt that timed out while its worker
    copied, or a staff retry) stay: its next copies go to the same names, and if it
    ends without success its stop owes them."""
    copies = [
        (item.generation.pk, index, copy.key)
        for item in losers
        for index, _, copy in item.kept
        if copy.outcome == persistence.Outcome.PERSISTED and copy.key
    ]
    if not copies:
        return
    statuses = dict(
        Generation.objects.filter(pk__in={generation_id for generation_id, _, _ in copies}).values_list("pk", "status")
    )
    ended = (Generation.Status.FAILED, Generation.Status.CANCELED)
    rows = {
        (generation_id, index): (persisted, storage_key)
        for generation_id, index, persisted, storage_key in Media.objects.filter(
            generation_id__in=[pk for pk, status in statuses.items() if status == Generation.Status.SUCCEEDED]
        ).values_list("generation_id", "index", "persisted", "storage_key")
    }

    def surplus(generation_id: uuid.UUID, index: int, key: str) -> bool:
        if statuses.get(generation_id) != Generation.Status.SUCCEEDED:
            return False
        row = rows.get((generation_id, index))
        return row is None or (row[0] and row[1] != key)

    revoke.stored_removal_owe(
        objects=revoke.where_stored([key for generation_id, _, key in copies if statuses.get(generation_id) in ended]),
        reason=StoredRemoval.Reason.GENERATION_STOPPED,
    )
    revoke.stored_removal_owe(
        objects=revoke.where_stored(
            [key for generation_id, index, key in copies if surplus(generation_id, index, key)]
        ),
        reason=StoredRemoval.Reason.SURPLUS_COPY,
    )


def _media_for(
    generation: Generation,
    attempt: Attempt,
    index: int,
    output: OutputImage,
    copy: persistence.Copy,
    *,
    now: dt.datetime,
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
        # Not copied yet: durable state the worker's poller retries from, with backoff.
        persist_next_at=None if persisted else persist_retry_at(attempts=1, now=now),
    )


def result_gone(generation: Generation, attempt: Attempt) -> None:
    """Fail an attempt whose images were all gone before we kept a copy; the next model tries."""
    with transaction.atomic():
        Media.objects.filter(generation=generation, persisted=False).delete()
        reopened = fail_attempt(generation, attempt, RESULT_GONE, after_success=True, logged=False)
    if reopened and Generation.objects.filter(pk=generation.pk, status=Generation.Status.RUNNING).exists():
        generation_log(generation, f"{label(attempt.model)} finished, but {RESULT_GONE_REASON}", level="warning")
        submit_model(generation, position=attempt.position + 1)
