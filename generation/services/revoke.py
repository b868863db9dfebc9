"""Taking stored images out of reach: moves and removals owed to storage.

Two kinds of work, each recorded in the database *before* storage is asked, so that a
failure (Cloudinary down, a timeout, a refused signature) or a crash leaves a record
instead of a log line, and the worker tries again until storage confirms:

- a *move* to a fresh name (`Media.move_to`, `move_next_at`), owed when an image is made
  private, its generation removed from history, or staff take it down. Cloudinary's
  signed delivery URL of a public image never expires (and CDNs cache it); only a new
  name kills it. The row stays, so the move is state on the row.
- a *removal* (`StoredRemoval`), owed for a stored object no row points to any more: an
  image or an account deleted, a copy that landed after its image was deleted.

Writers, one per transition: `media_move_owe` records a move and `media_move` settles
it (done, or failed with the next try); `stored_removal_owe` records removals and
`stored_removal_attempt` settles each. The first try follows at once; after that the
worker's poller claims due work (`media_moves_due`, `stored_removals_due`, a lease like
the persistence retries) and calls the same settling functions, with a doubling delay
capped at RETRY_MAX_SECONDS, for as long as it takes: giving up would leave a private
image public.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Iterable
from functools import partial

from django.db import transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from .. import persistence, storage
from ..models import Generation, Media, StoredRemoval
from .claim import backoff_at, claim_due

logger = logging.getLogger("generation")

# The first retry a minute after the failure, then doubling: an outage of Cloudinary's
# API is usually minutes, and an hour between tries bounds the calls a long one costs.
RETRY_SECONDS = 60
RETRY_MAX_SECONDS = 3600

MediaId = uuid.UUID | str


def retry_at(*, attempts: int, now: dt.datetime | None = None) -> dt.datetime:
    """When to try owed storage work again after `attempts` failed tries."""
    return backoff_at(attempts=attempts, first=RETRY_SECONDS, most=RETRY_MAX_SECONDS, now=now)


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


# --- Moves -------------------------------------------------------------------------------


def media_move_owe(*, media_id: MediaId, now: dt.datetime | None = None) -> bool:
    """Record that an image's stored file must leave its current name; False when it has
    none to leave (not copied yet: its derived name was never public).

    Call it in the transaction that makes the image private or takes it down, then
    `media_move` after it. A move already owed keeps its target (a try of it may be
    under way) and becomes due now.
    """
    media = Media.objects.filter(pk=media_id, persisted=True).exclude(storage_key="").only("storage_key").first()
    if media is None:
        return False
    target = storage.fresh_key(media.storage_key)
    # Its share preview (named after the key the image leaves) goes now, not after the
    # move: the preview is only a copy, made again when the image is public again.
    stored_removal_owe(objects=previews_of([media.storage_key]), reason=StoredRemoval.Reason.PREVIEW_REVOKED)
    return bool(
        Media.objects.filter(pk=media.pk).update(
            move_to=Case(When(move_to="", then=Value(target)), default=F("move_to")),
            move_next_at=now or timezone.now(),
        )
    )


def media_move(*, media_id: MediaId) -> bool:
    """Try the move owed for one image; True when nothing is owed any more.

    The one writer of a move's outcome: on success the row takes the new name and the
    debt is cleared in one conditional UPDATE (on the names it read, so a concurrent
    change wins and this try simply counts for nothing); on failure the error is kept
    and the next try set with a doubling delay.
    """
    media = Media.objects.filter(pk=media_id, move_next_at__isnull=False).first()
    if media is None:
        return True
    old_key, target = media.storage_key, media.move_to
    try:
        new_key, url = storage.move_stored(old_key, target)
    except Exception as exc:
        attempts = media.move_attempts + 1
        Media.objects.filter(pk=media.pk, move_to=target, move_next_at__isnull=False).update(
            move_attempts=attempts, move_error=_describe(exc), move_next_at=retry_at(attempts=attempts)
        )
        logger.warning(
            "image %s: moving %s off its old name failed (try %s); the worker tries again",
            media.pk,
            old_key,
            attempts,
            exc_info=True,
        )
        return False
    moved = Media.objects.filter(pk=media.pk, storage_key=old_key, move_to=target).update(
        storage_key=new_key, url=url, move_to="", move_next_at=None, move_attempts=0, move_error=""
    )
    # A preview made under the old name while the move was owed (public again meanwhile).
    stored_removal_owe(objects=previews_of([old_key]), reason=StoredRemoval.Reason.PREVIEW_REVOKED)
    if not moved and not Media.objects.filter(pk=media.pk).exists():
        # Deleted while its file moved: the removal its deletion owed may have run before
        # the file arrived under the new name.
        stored_removal_owe(objects=where_stored([new_key]), reason=StoredRemoval.Reason.IMAGE_DELETED)
    return True


def media_moves_due(*, limit: int, now: dt.datetime | None = None) -> list[uuid.UUID]:
    """Claim up to `limit` images whose owed move is due (a lease, as for copies), for
    the caller to `media_move` each."""
    now = now or timezone.now()
    return claim_due(Media.objects.filter(move_next_at__lte=now), field="move_next_at", limit=limit, now=now)


# --- Removals ----------------------------------------------------------------------------


def stored_objects_of_media(media: Media) -> list[tuple[str, str]]:
    """("cloudinary" | "storage", name) of what an image holds in storage: its file, the
    name an owed move goes to (a try whose answer was lost may have put it there), and
    its share preview."""
    if not (media.persisted and media.storage_key):
        return []
    return where_stored([media.storage_key, media.move_to]) + previews_of([media.storage_key])


def previews_of(keys: Iterable[str]) -> list[tuple[str, str]]:
    """("storage", name) of the share preview each result key in default storage may have
    (generation/previews.py); Cloudinary's are transformations, with nothing stored."""
    return [(StoredRemoval.Where.STORAGE, name) for name in map(storage.preview_key, keys) if name]


def where_stored(keys: Iterable[str]) -> list[tuple[str, str]]:
    """("cloudinary" | "storage", key) for each stored result's key."""
    return [
        (StoredRemoval.Where.CLOUDINARY if storage.is_cloudinary_key(key) else StoredRemoval.Where.STORAGE, key)
        for key in keys
        if key
    ]


def stored_removal_owe(*, objects: Iterable[tuple[str, str]], reason: str) -> None:
    """Record that each stored object must go, and try them once the transaction this is
    called in commits (at once outside one). Call it in the transaction that deletes the
    rows pointing to them, so that no crash can lose the debt.

    A removal already owed is the same debt, made due now. Its `next_at` changes, and
    that is what keeps the newer debt: a try of the older one may be waiting for
    storage's answer, having asked before this object landed (a cancel's removal while
    Cloudinary still fetched the worker's copy), and it deletes the record only if
    nobody owed it again meanwhile (`stored_removal_attempt`)."""
    now = timezone.now()
    pending = {(where, key) for where, key in objects if key}
    if not pending:
        return
    StoredRemoval.objects.bulk_create(
        [StoredRemoval(where=where, key=key, reason=reason, next_at=now) for where, key in sorted(pending)],
        update_conflicts=True,
        unique_fields=["where", "key"],
        update_fields=["next_at"],
    )
    transaction.on_commit(partial(_attempt_each, sorted(pending)))


def stored_removals_forget_for_retry(*, generation: Generation) -> int:
    """A stopped generation is retried: the removals its stop owed for the job's derived
    names are dropped, since the retry copies its images to those same names (and a copy
    lands before the row that points to it, so a removal retried in between would delete
    the fresh image). Whatever the retry makes it owns; if it stops again, its stop owes
    them anew. Call it in the retry's transaction."""
    keys = persistence.derived_keys(generation.pk, count=max(1, generation.num_images))
    forgotten, _ = StoredRemoval.objects.filter(key__in=keys, reason=StoredRemoval.Reason.GENERATION_STOPPED).delete()
    return forgotten


def _attempt_each(objects: list[tuple[str, str]]) -> None:
    for where, key in objects:
        for removal_id in StoredRemoval.objects.filter(where=where, key=key).values_list("pk", flat=True):
            stored_removal_attempt(removal_id=removal_id)


def stored_removal_attempt(*, removal_id: int) -> bool:
    """Try one owed removal; True when it is no longer owed.

    The one writer of a removal's outcome: done deletes the record, a failure keeps it
    with the error and the next try. An object some row points to again is never
    removed (a staff retry of a stopped generation copies its images under the same
    derived names): the record is dropped instead, since when in doubt the image stays.
    Either deletion is of the record as this try read it: one owed again meanwhile
    (its `next_at` moved) stays for the try that owing it started.
    """
    removal = StoredRemoval.objects.filter(pk=removal_id).first()
    if removal is None:
        return True
    as_read = StoredRemoval.objects.filter(pk=removal.pk, next_at=removal.next_at)
    if _still_pointed_to(removal.key):
        logger.info("%s is in use again; it is not removed", removal.key)
        return bool(as_read.delete()[0])
    try:
        storage.remove_stored(removal.where, removal.key)
    except Exception as exc:
        attempts = removal.attempts + 1
        StoredRemoval.objects.filter(pk=removal.pk).update(
            attempts=attempts, last_error=_describe(exc), next_at=retry_at(attempts=attempts)
        )
        logger.warning(
            "removing %s %s failed (try %s); the worker tries again",
            removal.where,
            removal.key,
            attempts,
            exc_info=True,
        )
        return False
    return bool(as_read.delete()[0])


# --- Names from before private delivery (manage.py rename_stored_media) -------------------


def legacy_source_rename(*, generation: Generation) -> bool:
    """Give a source photo stored under an old, guessable name a fresh one. The copy comes
    first; the row moves to it only while it still names the old photo, and whichever of
    the two no row points to then is owed for removal (in the same transaction), so a
    generation deleted meanwhile leaves no copy behind. False if nothing moved."""
    copied = storage.source_copy_unguessable(generation)
    if copied is None:
        return False
    old, new = copied
    with transaction.atomic():
        moved = Generation.objects.filter(pk=generation.pk, source_image=old).update(source_image=new)
        # Another generation made from the same photo keeps the old name until its own turn:
        # a removal is never done while a row points to the object.
        left = old if moved else new
        stored_removal_owe(objects=[(StoredRemoval.Where.STORAGE, left)], reason=StoredRemoval.Reason.RENAMED)
    return bool(moved)


def legacy_media_rename(*, media: Media) -> bool:
    """Move a stored result from an old, guessable name to a fresh one (and, at
    Cloudinary, private delivery), then point its row there. If the row went (the image
    or its account deleted) or moved meanwhile, the fresh object is nobody's: owed for
    removal. False if nothing moved."""
    moved_to = storage.media_move_unguessable(media)
    if moved_to is None:
        return False
    new, url = moved_to
    with transaction.atomic():
        moved = Media.objects.filter(pk=media.pk, storage_key=media.storage_key).update(storage_key=new, url=url)
        stored_removal_owe(objects=previews_of([media.storage_key]), reason=StoredRemoval.Reason.PREVIEW_REVOKED)
        if not moved:
            # Whoever deleted the row owed its old name, which the move emptied already.
            stored_removal_owe(objects=where_stored([new]), reason=StoredRemoval.Reason.RENAMED)
    return bool(moved)


def _still_pointed_to(key: str) -> bool:
    return (
        Media.objects.filter(storage_key=key).exists()
        # Only rows owing a move have a target (the partial index media_move_due).
        or Media.objects.filter(move_next_at__isnull=False, move_to=key).exists()
        or Generation.objects.filter(source_image=key).exists()
    )


def stored_removals_due(*, limit: int, now: dt.datetime | None = None) -> list[int]:
    """Claim up to `limit` owed removals that are due (a lease), for the caller to
    `stored_removal_attempt` each."""
    now = now or timezone.now()
    return claim_due(StoredRemoval.objects.filter(next_at__lte=now), field="next_at", limit=limit, now=now)
