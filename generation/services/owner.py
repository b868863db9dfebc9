"""What an owner does with their finished generations and images."""

from __future__ import annotations

import logging
import uuid
from functools import partial
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from stefna.errors import NotFound

from .. import persistence, storage
from ..models import Generation, Media
from .request import discard

if TYPE_CHECKING:
    from stefna.accounts.models import User

logger = logging.getLogger("generation")


def generation_hide(*, user: User, generation_id: uuid.UUID | str) -> None:
    """Remove a finished generation from its owner's history. The row stays (money record)."""
    generation = Generation.objects.filter(pk=generation_id, user=user, deleted_at__isnull=True).first()
    if generation is None:
        raise NotFound("Generation not found.")
    was_public = list(Media.objects.filter(generation=generation, is_public=True))
    with transaction.atomic():
        Generation.objects.filter(pk=generation.pk).update(deleted_at=timezone.now())
        Media.objects.filter(generation=generation).update(is_public=False)
    for media in was_public:
        storage.media_unpublish(media)  # leaked or cached public addresses stop working


def media_set_public(*, user: User, media_id: uuid.UUID | str, is_public: bool) -> Media:
    # An image of a generation removed from history is gone for its owner too: it cannot be
    # made public again (storage.media_is_public would refuse it; its share page agreed).
    media = Media.objects.filter(pk=media_id, user=user, generation__deleted_at__isnull=True).first()
    if media is None:
        raise NotFound("Image not found.")
    was_public, media.is_public = media.is_public, bool(is_public)
    media.save(update_fields=["is_public"])
    if was_public and not media.is_public:
        storage.media_unpublish(media)  # leaked or cached public addresses stop working
    return media


def media_delete(*, user: User, media_id: uuid.UUID | str) -> uuid.UUID:
    """Delete an image for good: the row, and the stored file when we hold it locally.

    Returns the id of the generation it belonged to.
    """
    media = Media.objects.filter(pk=media_id, user=user).first()
    if media is None:
        raise NotFound("Image not found.")
    storage_key = media.storage_key
    in_cloudinary = media.persisted and bool(storage_key) and persistence.is_cloudinary_key(storage_key)
    persisted_locally = media.persisted and bool(storage_key) and not in_cloudinary
    media.delete()
    if persisted_locally:
        transaction.on_commit(partial(discard, storage_key))
    if in_cloudinary:
        transaction.on_commit(partial(_destroy_cloudinary_asset, storage_key))
    return media.generation_id


def _destroy_cloudinary_asset(public_id: str) -> None:
    try:
        persistence.destroy_cloudinary_asset(public_id)
    except Exception:  # the row is gone either way; a leftover asset is only storage
        logger.exception("could not delete Cloudinary asset %s", public_id)
