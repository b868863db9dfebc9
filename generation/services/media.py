"""Images after the generation succeeded: saving the ones not copied yet.

An image fal made that could not be copied at once (Cloudinary down, a timeout) keeps
fal's URL with `persisted=False` and a `persist_next_at`: durable state on the row,
not a task in some process's memory. The worker's poller claims due rows
(`media_persist_due`) and tries again with a doubling delay, so a worker killed halfway
only delays the copy until its claim runs out.
"""

from __future__ import annotations

import datetime as dt
import uuid

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from stefna.errors import NotFound

from .. import persistence
from ..models import Generation, Media

MediaId = uuid.UUID | str


def persist_retry_at(*, attempts: int, now: dt.datetime | None = None) -> dt.datetime:
    """When to try again after `attempts` failed copies: a doubling delay, capped."""
    delay = min(
        settings.MEDIA_PERSIST_RETRY_MAX_SECONDS, settings.MEDIA_PERSIST_RETRY_SECONDS * 2 ** max(0, attempts - 1)
    )
    return (now or timezone.now()) + dt.timedelta(seconds=delay)


def media_persist(*, media_id: MediaId, reschedule: bool = False) -> Media:
    """Save one image durably now (staff action, and the poller's retry).

    With `reschedule`, a failure that is worth retrying sets the next try with a
    doubling delay; a source that is gone stops the retries (logged as an error).
    """
    media = Media.objects.select_related("generation").filter(pk=media_id).first()
    if media is None:
        raise NotFound("Image not found.")
    outcome = persistence.persist(media)
    if outcome == persistence.Outcome.RETRY:
        if reschedule:
            attempts = Media.objects.filter(pk=media.pk).values_list("persist_attempts", flat=True).first() or 1
            Media.objects.filter(pk=media.pk, persisted=False).update(
                persist_next_at=persist_retry_at(attempts=attempts)
            )
    else:
        Media.objects.filter(pk=media.pk).update(persist_next_at=None)
    media.refresh_from_db()
    return media


def media_persist_due(*, limit: int, now: dt.datetime | None = None) -> list[uuid.UUID]:
    """Claim up to `limit` images whose next copy is due (a conditional UPDATE to a
    lease, like generations), for the caller to `media_persist` each."""
    now = now or timezone.now()
    lease = now + dt.timedelta(seconds=settings.PIPELINE_LEASE_SECONDS)
    with transaction.atomic():
        ids = list(
            Media.objects.filter(
                persisted=False, persist_next_at__lte=now, generation__status=Generation.Status.SUCCEEDED
            )
            .order_by("persist_next_at")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", flat=True)[:limit]
        )
        if ids:
            Media.objects.filter(pk__in=ids).update(persist_next_at=lease)
    return ids
