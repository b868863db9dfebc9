"""A generation's log: the lines its owner sees, appended by the database.

Every stage writes through `generation_log`, so a state change and its log line can be
one conditional UPDATE (`only_if`), and concurrent writers never drop each other's lines.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from django.db.models import Case, DateTimeField, F, Q, Value, When
from django.utils import timezone

from stefna.logging_json import current_request, request_id_bound

from ..labels import model_label
from ..models import AppendLogLines, Generation

logger = logging.getLogger("generation")
# One line per state transition, naming the function that performed it: operators
# grep for it, and the tests prove from it that every path goes through one writer.
transitions = logging.getLogger("generation.transitions")

MAX_LOG_LINES = 200


def log_line(message: str, level: str = "info") -> dict[str, str]:
    return {"message": message, "level": level, "timestamp": timezone.now().isoformat()}


def label(endpoint: str | None) -> str:
    """A model's name as the owner reads it."""
    if not endpoint:
        return "the model"
    return model_label(endpoint)  # offline preview mode names the offline renderer (issue 19)


def working_on(generation: Generation) -> AbstractContextManager[None]:
    """The worker's log lines (and Sentry events) written inside carry the id of the web
    request that asked for `generation`, so one user action can be followed from the
    web's log line to the worker's. Bound around each job, never for a whole thread or
    round: a thread moves on to other generations, each with its own id.

    Inside a web request (a staff action, a webhook) its own id stays: the request's
    log line and the lines it caused must share one id.
    """
    if current_request.get() is not None:
        return nullcontext()
    return request_id_bound(generation.origin_request_id)


def about_batch(generations: list[Generation]) -> dict[str, list[str]]:
    """`extra=` for a line about several generations at once (a batch that failed): their
    ids and the ids of the requests that asked for them. No single request id can be bound
    around such a line (`working_on`), so each is named in it instead."""
    return {
        "generation_ids": [str(generation.pk) for generation in generations],
        "request_ids": sorted({generation.origin_request_id for generation in generations} - {""}),
    }


def log_transition(generation_id: object, *, to: str, writer: str, **extra: Any) -> None:
    transitions.info(
        "generation %s -> %s (%s)",
        generation_id,
        to,
        writer,
        extra={"generation_id": str(generation_id), "to": to, "writer": writer, **extra},
    )


def generation_log(
    generation: Generation,
    message: str | None = None,
    *,
    level: str = "info",
    lines: list[dict[str, str]] | None = None,
    next_check_at: Any = None,
    only_if: tuple[str, ...] | None = None,
    where: Q | None = None,
    **changes: Any,
) -> bool:
    """Append log lines (the UI shows them) and apply `changes`, in one UPDATE.

    The database appends the lines (`AppendLogLines`), so two writers never drop each
    other's lines, with no read or lock first. With `only_if`, nothing happens unless
    the generation's status is one of those (a change and its log line in one write);
    returns whether it happened; `where` is a further condition on the row (a claim
    holder's `claim.still_held`). `next_check_at` schedules the next look, but only
    while the generation is active.
    """
    new = list(lines or [])
    if message:
        new.append(log_line(message, level))
    if next_check_at is not None:
        active_only = only_if is not None and set(only_if) <= set(Generation.ACTIVE_STATUSES)
        # A generation that became final meanwhile keeps no next check.
        changes["next_check_at"] = (
            next_check_at
            if active_only
            else Case(
                When(status__in=Generation.ACTIVE_STATUSES, then=Value(next_check_at)),
                default=F("next_check_at"),
                output_field=DateTimeField(),
            )
        )
    rows = Generation.objects.filter(pk=generation.pk)
    if only_if is not None:
        rows = rows.filter(status__in=only_if)
    if where is not None:
        rows = rows.filter(where)
    if new:
        changes["logs"] = AppendLogLines("logs", new, keep=MAX_LOG_LINES)
    if not changes:
        return rows.exists()
    updated = rows.update(**changes)
    if updated and "logs" not in generation.get_deferred_fields():  # (unread stays unread)
        generation.logs = (list(generation.logs or []) + new)[-MAX_LOG_LINES:]
    return bool(updated)
