"""Staff moderation of images: take one down from the feed with a reason, or restore it.

A takedown sets `hidden`, which the feed and share pages already exclude, and moves
the stored file to a fresh name as making an image private does: the public delivery
address every visitor was sent to (Cloudinary's signed URL, which never expires; a
bucket's presigned URL; a CDN's copy) dies with the old name. The row, the file and the
owner's `is_public` choice stay, so a restore puts back what was there, under the new
name. Kept apart from the pipeline's services (`generation/services/`) because only
staff call these.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

from django.db import transaction

from stefna.errors import InvalidInput, NotFound

from .models import Media
from .services import revoke
from .services.owner import media_locked

if TYPE_CHECKING:
    from stefna.accounts.models import User

logger = logging.getLogger("generation")

REASON_MAX_LENGTH = Media._meta.get_field("hidden_reason").max_length or 200


def media_takedown(*, media_id: uuid.UUID | str, reason: str, by: User) -> Media:
    """Hide an image from the feed and its share page, and move its stored file off
    every public address. The reason is required and kept."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("Give a reason for the takedown.", detail={"field": "reason"})
    if len(reason) > REASON_MAX_LENGTH:
        raise InvalidInput(f"Keep the reason under {REASON_MAX_LENGTH} characters.", detail={"field": "reason"})
    with transaction.atomic():
        # Locked after its generation, the order the finishing worker takes (media_locked).
        if media_locked(media_id) is None:
            raise NotFound("Image not found.")
        # Only the columns it owns: the owner's is_public stays theirs.
        Media.objects.filter(pk=media_id).update(hidden=True, hidden_reason=reason)
        owed = revoke.media_move_owe(media_id=media_id)
    logger.info("media %s taken down by %s: %s", media_id, by.pk, reason)
    if owed:
        revoke.media_move(media_id=media_id)  # when storage refuses, the worker finishes it
    return Media.objects.get(pk=media_id)


def media_restore(*, media_id: uuid.UUID | str, by: User) -> Media:
    """Undo a takedown: the image shows again wherever its owner's `is_public` allows."""
    with transaction.atomic():
        # Locked after its generation, the order the finishing worker takes (media_locked).
        if media_locked(media_id) is None:
            raise NotFound("Image not found.")
        Media.objects.filter(pk=media_id).update(hidden=False, hidden_reason="")
    logger.info("media %s restored by %s", media_id, by.pk)
    return Media.objects.get(pk=media_id)
