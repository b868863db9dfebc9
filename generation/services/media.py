"""Images after the generation succeeded: saving the ones not copied yet.

An image fal made that could not be copied at once (Cloudinary down, a timeout) keeps
fal's URL with `persisted=False` and a `persist_next_at`: durable state on the row,
not a task in some process's memory. The worker's poller claims due rows
(`media_persist_due`) and tries again with a doubling delay, so a worker killed halfway
only delays the copy until its claim runs out.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from credits import ledger
from stefna.errors import NotFound

from .. import persistence
from ..models import Generation, Media, StoredRemoval
from . import revoke
from .claim import backoff_at, claim_due
from .log import generation_log, working_on

logger = logging.getLogger("generation")

MediaId = uuid.UUID | str


def persist_retry_at(*, attempts: int, now: dt.datetime | None = None) -> dt.datetime:
    """When to try a copy again after `attempts` failed ones."""
    return backoff_at(
        attempts=attempts,
        first=settings.MEDIA_PERSIST_RETRY_SECONDS,
        most=settings.MEDIA_PERSIST_RETRY_MAX_SECONDS,
        now=now,
    )


def media_persist(*, media_id: MediaId, reschedule: bool = False) -> Media:
    """Save one image durably now (staff action, and the poller's retry).

    With `reschedule`, a failure that is worth retrying sets the next try with a
    doubling delay; a source that is gone stops the retries (logged as an error).
    """
    media = Media.objects.select_related("generation").filter(pk=media_id).first()
    if media is None:
        raise NotFound("Image not found.")
    with working_on(media.generation):
        return _persist(media, reschedule=reschedule)


def _persist(media: Media, *, reschedule: bool) -> Media:
    persisted = persistence.persist(media)
    outcome = persisted.outcome
    if persisted.surplus:
        revoke.stored_removal_owe(
            objects=revoke.where_stored([persisted.surplus]), reason=StoredRemoval.Reason.SURPLUS_COPY
        )
    if outcome == persistence.Outcome.GONE:
        _image_lost(media)
    if outcome == persistence.Outcome.RETRY:
        if reschedule:
            attempts = Media.objects.filter(pk=media.pk).values_list("persist_attempts", flat=True).first() or 1
            Media.objects.filter(pk=media.pk, persisted=False).update(
                persist_next_at=persist_retry_at(attempts=attempts)
            )
    else:
        Media.objects.filter(pk=media.pk).update(persist_next_at=None)
    try:
        media.refresh_from_db()
    except Media.DoesNotExist:
        pass  # deleted while it was copied; its copy was handed over for removal above
    return media


def _image_lost(media: Media) -> None:
    """fal deleted an image before our copy of it existed: it is hidden (its link is
    dead) and, when the generation has no image left at all, the owner gets the credits
    back and the generation says why. The capture is final in the ledger (one settlement
    per charge), so the credits come back as a grant, exactly once: only the caller that
    marks the generation `result_lost` grants.
    """
    generation = media.generation
    with transaction.atomic():
        # Only a row still not saved: another try of its copy (staff's "save now" while
        # the worker's retry runs) may have saved it before fal deleted its file, and an
        # image its owner deleted meanwhile was not lost on our side (deleting gives
        # nothing back); either way there is nothing to hide and nothing to refund.
        hidden = Media.objects.filter(pk=media.pk, persisted=False).update(
            persist_next_at=None, is_public=False, hidden=True, hidden_reason="Lost: fal deleted it before it was saved"
        )
        if not hidden:
            return
        kept = Media.objects.filter(generation=generation).exclude(hidden=True, persisted=False).exists()
        if kept:
            return
        message = (
            "fal deleted the images before we could save a copy, so there is nothing to show; "
            f"your {generation.cost} credits were given back."
        )
        lost = Generation.objects.filter(pk=generation.pk, status=Generation.Status.SUCCEEDED, error_code="").update(
            error_code="result_lost", error_message=message
        )
        if lost:
            ledger.grant(
                user=generation.user,
                amount=generation.cost,
                reason=ledger.Reason.RESULT_LOST,
                note=f"images of {generation.pk} lost at fal",  # for staff; the statement shows the reason
            )
    if lost:
        generation_log(generation, message, level="error")
        logger.error(
            "generation %s: every image was lost at fal before it was saved; credits given back", generation.pk
        )


def media_persist_due(*, limit: int, now: dt.datetime | None = None) -> list[uuid.UUID]:
    """Claim up to `limit` images whose next copy is due (a conditional UPDATE to a
    lease, like generations), for the caller to `media_persist` each."""
    now = now or timezone.now()
    due = Media.objects.filter(
        persisted=False, persist_next_at__lte=now, generation__status=Generation.Status.SUCCEEDED
    )
    return claim_due(due, field="persist_next_at", limit=limit, now=now, of=("self",))
