"""Stopping: the one writer of a generation's end without success, and of its refund.

`generation_stop` moves an active generation to `failed` or `canceled`, ends its attempts
in flight and refunds its credits, in one transaction. Every path that ends a generation
early calls it: every model failing (`generation_fail`), the sweeper's time bound, the
owner's cancel from the API or the page, and staff's cancel and refund actions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from credits.exceptions import AlreadySettled
from credits.payments.refunds import generation_charge_refund
from stefna.errors import NotFound

from .. import notify, persistence
from ..exceptions import InvalidTransition, ProviderError
from ..models import AppendLogLines, Attempt, Generation, Media, StoredRemoval
from ..providers import get_provider
from . import revoke
from .claim import GenerationId, workers_wake
from .log import MAX_LOG_LINES, generation_log, label, log_line, log_transition

if TYPE_CHECKING:
    from credits.models import CreditEntry
    from stefna.accounts.models import User

logger = logging.getLogger("generation")

IN_FLIGHT = (Attempt.Status.SUBMITTING, Attempt.Status.QUEUED, Attempt.Status.RUNNING)
# An attempt whose images fal had deleted before we could copy any (see finish.result_gone).
RESULT_GONE = "The result images were already gone when we fetched them"


@dataclass
class Stopped:
    """What `generation_stop` did: whether it ended the generation, and the refund."""

    stopped: bool
    refund: CreditEntry | None = None
    attempts: list[Attempt] = field(default_factory=list)


def generation_stop(
    *,
    generation: Generation,
    status: str,
    code: str,
    message: str,
    log_message: str,
    refund_note: str,
    level: str = "info",
    attempts_end_as: str = Attempt.Status.CANCELED,
    refund_if_final: bool = False,
    by: User | None = None,
    notify_owner: bool = False,
) -> Stopped:
    """End an active generation as `status` (failed or canceled) and refund it, once.

    In one transaction: the conditional UPDATE out of queued/running (only one caller
    wins it, so a cancel racing the worker's failure refunds once), its attempts in
    flight ended (and one whose answer a webhook stored, not recorded yet), any images
    of a result that raced it deleted (nobody pays for them), the removal of any copies
    of them owed (services/revoke.py: tried once this commits, retried by the worker
    until storage confirms; a copier still at work owes its own copies when it loses),
    and the refund through the ledger. With
    `refund_if_final`, a generation that is already final but was never settled is
    refunded too (staff's refund action); the ledger refuses a second settlement, and
    then AlreadySettled rolls everything back. With `notify_owner`, the email an owner
    asked for (notify.py) is owed in the same transaction. The owner's log line is written
    with the final state, so the first final state a watcher reads is the whole of it.
    After the commit, the jobs at fal are canceled (best effort).
    """
    now = timezone.now()
    with transaction.atomic():
        # Lock order: the attempts first, then the generation, as every other writer of
        # both (the worker recording a success holds its attempt while it waits for the
        # generation); the other order deadlocked a cancel racing the worker.
        attempts = list(Attempt.objects.select_for_update().filter(generation=generation).order_by("pk"))
        line = log_line(log_message, level)
        stopped = bool(
            Generation.objects.filter(pk=generation.pk, status__in=Generation.ACTIVE_STATUSES).update(
                status=status,
                error_code=code,
                error_message=message[:2000],
                completed_at=now,
                next_check_at=None,
                queue_position=None,
                # The owner's line in the same write, not after the commit: a live stream
                # ends on the first final state it reads (and a reconnect naming it gets
                # 204), so a line added later would never reach a watcher.
                logs=AppendLogLines("logs", [line], keep=MAX_LOG_LINES),
            )
        )
        in_flight: list[Attempt] = []
        refund = None
        if stopped:
            in_flight = [attempt for attempt in attempts if attempt.status in IN_FLIGHT]
            # An answer fal's webhook stored that no worker has recorded yet (its attempt
            # `succeeded`, the generation still running) ends with the generation too.
            # Left `succeeded`, a worker holding its copies would record it later as the
            # success of whatever runs then: a staff retry, charged and finished with the
            # images this stop deletes, its own job left at fal.
            unrecorded = [attempt for attempt in attempts if attempt.status == Attempt.Status.SUCCEEDED]
            ended = {"status": attempts_end_as, "finished_at": now}
            if attempts_end_as == Attempt.Status.FAILED:
                ended["error"] = message[:2000]
            Attempt.objects.filter(pk__in=[a.pk for a in [*in_flight, *unrecorded]]).update(**ended)
            # Images of a result that raced the stop are not kept: the user is refunded.
            Media.objects.filter(generation=generation).delete()
            # Any job fal may have finished may have copies under the generation's image
            # names: a worker copying it right now, one that died after copying, or one
            # whose attempt timed out while it copied (a later model that failed too
            # never overwrote them; hence every attempt, not only those in flight). Owed
            # here rather than tried after the commit, so that Cloudinary refusing, or a
            # crash, leaves a debt the worker pays instead of an image nobody points to.
            # Nothing points to these names any more (the rows went just above); should a
            # staff retry point to them again, the removal is dropped, not done.
            if any(a.fal_job_id or a.status == Attempt.Status.SUCCEEDED for a in attempts):
                revoke.stored_removal_owe(
                    objects=revoke.where_stored(
                        persistence.derived_keys(generation.pk, count=max(1, generation.num_images))
                    ),
                    reason=StoredRemoval.Reason.GENERATION_STOPPED,
                )
            if notify_owner:
                # In the transaction that ends it: a process killed after the commit (while
                # fal is asked to cancel, below) leaves the email owed, not forgotten.
                notify.generation_notify_ended(generation_ids=[generation.pk])  # issue 19
        if stopped or refund_if_final:
            # The ledger's refund, plus what refunded purchases are owed of it.
            refund = generation_charge_refund(generation=generation, note=refund_note, by=by)
            if refund is None and refund_if_final:
                raise AlreadySettled()
    if stopped:
        generation.status = status
        if "logs" not in generation.get_deferred_fields():
            generation.logs = [*(generation.logs or []), line][-MAX_LOG_LINES:]
        log_transition(generation.pk, to=status, writer="generation_stop", code=code)
    elif refund is not None:  # staff's refund of a generation that had already ended
        generation_log(generation, log_message, level=level)
    for attempt in in_flight:
        cancel_at_provider(attempt.model, attempt.fal_job_id)
    return Stopped(stopped=stopped, refund=refund, attempts=in_flight)


def generation_fail(*, generation: Generation, code: str, message: str) -> bool:
    """Fail an active generation and refund it (every model failed, or it ran too long)."""
    result = generation_stop(
        generation=generation,
        status=Generation.Status.FAILED,
        code=code,
        message=message,
        log_message=message,
        refund_note=code,
        level="error",
        attempts_end_as=Attempt.Status.FAILED,
        notify_owner=True,
    )
    if result.stopped:
        logger.warning("generation %s failed (%s): %s", generation.pk, code, message)
    return result.stopped


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
    by_staff = user is None
    result = generation_stop(
        generation=generation,
        status=Generation.Status.CANCELED,
        code=Generation.STAFF_CANCEL_CODE if by_staff else "canceled",
        message="Canceled" + (" by staff" if by_staff else ""),
        log_message="Canceled; your credits were refunded",
        refund_note="canceled",
        # The owner did not stop it: one who asked to be emailed when it ends is told
        # (notify.py), or they would wait for an email that never comes. Their own
        # cancel is not emailed: they know.
        notify_owner=by_staff,
    )
    if not result.stopped:
        raise InvalidTransition("This generation has just finished; it can't be canceled.")
    workers_wake()  # its place at fal is free: a waiting job may start now
    generation.refresh_from_db()
    return generation


def generation_refund(*, generation_id: GenerationId, by: User | None = None) -> CreditEntry:
    """Staff: refund an unsettled generation through the ledger, failing it first if active.

    Raises AlreadySettled when its credits were already refunded or captured.
    """
    generation = Generation.objects.filter(pk=generation_id).first()
    if generation is None:
        raise NotFound("Generation not found.")
    result = generation_stop(
        generation=generation,
        status=Generation.Status.FAILED,
        code="refunded_by_staff",
        message="Stopped and refunded by staff.",
        log_message="Refunded by staff",
        refund_note="refunded by staff",
        refund_if_final=True,
        by=by,
        # When this fails it (still at work), not the pipeline: an owner who asked to be
        # emailed when it ends is told, as for any failure (only their own cancel is not).
        notify_owner=True,
    )
    assert result.refund is not None  # noqa: S101  (generation_stop raised AlreadySettled otherwise)
    return result.refund


def fail_attempt(
    generation: Generation,
    attempt: Attempt,
    message: str,
    *,
    after_success: bool = False,
    logged: bool = True,
) -> bool:
    """Fail one attempt: the only writer of attempt → failed (a stop ends its attempts
    with the generation). In flight, or with `after_success` one that succeeded at fal
    but whose result was unusable after all (its images gone before we kept a copy).
    `message` is stored as its error; `logged=False` leaves the log line to the caller.
    True for the caller that actually failed it."""
    from_statuses = (Attempt.Status.SUCCEEDED, *IN_FLIGHT) if after_success else IN_FLIGHT
    failed = Attempt.objects.filter(pk=attempt.pk, status__in=from_statuses).update(
        status=Attempt.Status.FAILED, error=message[:2000], finished_at=timezone.now()
    )
    if not failed or not logged:
        return bool(failed)
    chain = list(generation.model_chain or [])
    following = chain[attempt.position + 1] if attempt.position + 1 < len(chain) else None
    then = f"; trying {label(following)}" if following else ""
    generation_log(generation, f"{label(attempt.model)} failed: {message}{then}", level="warning")
    logger.warning("generation %s: %s failed: %s", generation.pk, attempt.model, message)
    return True


def results_lost(generation: Generation) -> bool:
    """True when the last model to finish had its images deleted at fal before we saved one."""
    last = Attempt.objects.filter(generation=generation).order_by("-started_at", "-position").first()
    return last is not None and last.error == RESULT_GONE


def result_lost_message(generation: Generation) -> str:
    return (
        "The images were made, but fal deleted them before we could save a copy, so nothing was kept "
        f"and your {generation.cost} credits were refunded. Please try again."
    )


def all_failed_message(generation: Generation) -> str:
    failures = [
        f"{label(a.model)}: {a.error or a.status}"
        for a in Attempt.objects.filter(generation=generation).order_by("started_at")
        if a.status == Attempt.Status.FAILED
    ]
    detail = "; ".join(failures[-len(generation.model_chain or []) or None :])
    return (
        "Every model for this style failed, so nothing was made and your "
        f"{generation.cost} credits were refunded." + (f" ({detail})" if detail else "")
    )


def cancel_at_provider(endpoint: str, request_id: str) -> None:
    """Ask the provider to stop a job (best effort: a finished job stays finished)."""
    if not request_id:
        return
    try:
        get_provider(request_id).cancel(endpoint, request_id)
    except ProviderError as exc:
        logger.warning("could not cancel %s at the provider: %s", request_id, exc.message)
