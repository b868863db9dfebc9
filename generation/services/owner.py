"""What an owner does with their finished generations and images."""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from stefna import ratelimit
from stefna.errors import NotFound

from ..models import Generation, Media, StoredRemoval
from . import revoke

if TYPE_CHECKING:
    from stefna.accounts.models import User

logger = logging.getLogger("generation")


def media_locked(media_id: uuid.UUID | str, **filters: Any) -> Media | None:
    """The image, locked after its generation's row; None when no image matches.

    Every writer of an image takes the generation's row first: a change to an image also
    updates its generation's row (the version trigger, migration 0007), and the finishing
    worker (finish._record) locks the generation, then its images. A writer that locked the
    image first waited for the worker's generation while the worker waited for its image,
    and PostgreSQL aborted one of them: the owner's click answered an error for nothing.
    One more locked SELECT on the click; nothing on the worker's path. (The image's
    generation never changes, so the join finds the row the image's lock will need.)"""
    Generation.objects.select_for_update(no_key=True, of=("self",)).filter(media__pk=media_id).values_list("pk").first()
    return Media.objects.select_for_update(of=("self",)).filter(pk=media_id, **filters).first()


def generation_hide(*, user: User, generation_id: uuid.UUID | str) -> None:
    """Remove a finished generation from its owner's history. The row stays (money record)."""
    generation = Generation.objects.filter(pk=generation_id, user=user, deleted_at__isnull=True).first()
    if generation is None:
        raise NotFound("Generation not found.")
    with transaction.atomic():
        Generation.objects.filter(pk=generation.pk).update(deleted_at=timezone.now())
        # Its images locked as they are read (as in media_set_public; after the generation's
        # row, the order every writer of both takes): one made public while this ran was
        # listed private, then made private below owing no move.
        images = Media.objects.select_for_update().filter(generation=generation)
        was_public = [media_id for media_id, public in images.values_list("pk", "is_public") if public]
        Media.objects.filter(generation=generation).update(is_public=False)
        owed = [media_id for media_id in was_public if revoke.media_move_owe(media_id=media_id)]
    for media_id in owed:
        revoke.media_move(media_id=media_id)  # leaked or cached public addresses stop working


def media_set_public(*, user: User, media_id: uuid.UUID | str, is_public: bool, limited: bool = True) -> Media:
    """Show or hide an image in the feed. Making a public one private also moves its file
    to a fresh name, so an address that leaked meanwhile dies; when storage refuses, the
    move stays owed (`media.move_owed`) and the worker finishes it.

    Changes count against the owner's RATE_LIMIT_VISIBILITY_CHANGES unless `limited` is
    False (staff acting on many images at once); asking for the state it is already in
    costs nothing."""
    with transaction.atomic():
        # An image of a generation removed from history is gone for its owner too: it cannot
        # be made public again (storage.media_is_public would refuse it; its share page agreed).
        # Locked as it is read: whether it *was* public decides whether its file moves. A
        # "private" that read it private while a "public" committed wrote over that public
        # state owing no move, and the address handed out meanwhile stayed alive for good.
        media = media_locked(media_id, user=user, generation__deleted_at__isnull=True)
        if media is None:
            raise NotFound("Image not found.")
        if limited and media.is_public != bool(is_public):
            limit, window = settings.RATE_LIMIT_VISIBILITY_CHANGES
            ratelimit.hit(f"visibility:{user.pk}", limit=limit, window=window)
        was_public, media.is_public = media.is_public, bool(is_public)
        media.save(update_fields=["is_public"])
        owed = was_public and not media.is_public and revoke.media_move_owe(media_id=media.pk)
    if owed:
        revoke.media_move(media_id=media.pk)  # leaked or cached public addresses stop working
        media.refresh_from_db()
    return media


def media_delete(*, user: User, media_id: uuid.UUID | str) -> uuid.UUID:
    """Delete an image for good: the row, and its stored file.

    The file's removal is recorded with the row's deletion and tried once that commits;
    the worker retries it until storage confirms (services/revoke.py). Returns the id of
    the generation it belonged to.
    """
    with transaction.atomic():
        # Locked before its stored keys are read: a copy retry (persistence.persist)
        # committing between the read and the delete would leave its copy owed by
        # nobody. With the lock, the retry waits, finds no row and owes its copy itself;
        # or it committed first and its key is read here.
        media = media_locked(media_id, user=user)
        if media is None:
            raise NotFound("Image not found.")
        stored = revoke.stored_objects_of_media(media)
        media.delete()
        revoke.stored_removal_owe(objects=stored, reason=StoredRemoval.Reason.IMAGE_DELETED)
    return media.generation_id
