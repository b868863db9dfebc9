"""The photos a person already gave us, offered again ("Try another style", recent photos).

A generation keeps its source photo in storage; a new generation can start from it
(`source_generation`, CONTRACT) without a new upload. The stored file is read back and
validated again, so the request service treats it exactly like a fresh upload.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.core.files.storage import default_storage
from django.utils.translation import gettext as _

from stefna.errors import InvalidInput

from .images import ValidatedImage, validate_image
from .models import Generation

if TYPE_CHECKING:
    from stefna.accounts.models import User

RECENT_PHOTOS = 6


@dataclass(frozen=True)
class RecentPhoto:
    generation_id: uuid.UUID
    url: str
    width: int | None
    height: int | None


def _owned_with_photo(user: User):  # type: ignore[no-untyped-def]
    return Generation.objects.filter(user=user, deleted_at__isnull=True).exclude(source_image="")


def source_photo(*, user: User, generation_id: object) -> ValidatedImage:
    """The stored photo of one of `user`'s generations, validated as an upload would be.

    Someone else's generation, a malformed id and a photo no longer in storage all give
    the same `invalid_input` on the `source_generation` field: nothing tells a caller
    whether another person's generation exists.
    """
    refused = InvalidInput(
        _("That photo is no longer available. Choose a photo to upload."),
        detail={"field": "source_generation"},
    )
    try:
        generation = _owned_with_photo(user).only("source_image").get(pk=generation_id)
    except (Generation.DoesNotExist, ValueError, TypeError) as exc:
        raise refused from exc
    try:
        with default_storage.open(generation.source_image.name, "rb") as stored:
            data = stored.read()
    except (OSError, ValueError) as exc:
        raise refused from exc
    checked = validate_image(data)  # still a photo within today's limits
    # The stored file was normalised when it was first uploaded: reuse its bytes as they
    # are, so trying style after style never loses JPEG quality to a fresh encode.
    return ValidatedImage(
        content=data,
        format=checked.format,
        width=checked.width,
        height=checked.height,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def recent_photos(*, user: User, limit: int = RECENT_PHOTOS) -> list[RecentPhoto]:
    """The person's latest distinct photos, newest first (one query)."""
    seen: set[tuple[int | None, int | None]] = set()
    photos: list[RecentPhoto] = []
    rows = _owned_with_photo(user).order_by("-created_at").only("pk", "source_image", "source_width", "source_height")
    for generation in rows[: limit * 4]:
        # Trying another style stores a copy of the photo under a new name, so names can't
        # tell copies apart; the stored size can, cheaply (two different photos of the same
        # size show once: a trade for not reading every file back).
        size = (generation.source_width, generation.source_height)
        if size in seen:
            continue
        seen.add(size)
        photos.append(
            RecentPhoto(
                generation_id=generation.pk,
                url=generation.source_image.url,
                width=generation.source_width,
                height=generation.source_height,
            )
        )
        if len(photos) == limit:
            break
    return photos


def photo_choices(*, user: User, chosen: object = None) -> list[RecentPhoto]:
    """Recent photos to pick again, with `chosen` (say, from "Try another style") first
    even when it is older than the recent ones. An unknown `chosen` is left out."""
    photos = recent_photos(user=user)
    if not chosen or any(str(photo.generation_id) == str(chosen) for photo in photos):
        return photos
    try:
        generation = _owned_with_photo(user).only("pk", "source_image", "source_width", "source_height").get(pk=chosen)
    except (Generation.DoesNotExist, ValueError, TypeError):
        return photos
    first = RecentPhoto(generation.pk, generation.source_image.url, generation.source_width, generation.source_height)
    return [first, *photos[: RECENT_PHOTOS - 1]]
