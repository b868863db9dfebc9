"""Share previews of public images in default storage (generation/previews.py)."""

from __future__ import annotations

import logging

from .. import previews
from ..models import Media, StoredRemoval
from . import revoke

logger = logging.getLogger("generation")


def media_preview_ready(*, media: Media) -> bool:
    """Make sure the share preview of a public image stored in default storage exists,
    making it on first use; False when the image stopped being public meanwhile (nothing
    is to be served then).

    The preview is written first and the row read after: an image made private, taken
    down or moved while the preview was being made is seen here, and the preview is owed
    for removal; one made private after this read owes it itself (revoke.media_move_owe).
    So no preview outlives its image's public life."""
    if previews.preview_exists(media):
        return True
    name = previews.preview_save(media)
    still_public = Media.objects.filter(
        pk=media.pk, storage_key=media.storage_key, is_public=True, hidden=False, generation__deleted_at__isnull=True
    ).exists()
    if not still_public:
        logger.info("image %s stopped being public while its share preview was made; removing it", media.pk)
        revoke.stored_removal_owe(
            objects=[(StoredRemoval.Where.STORAGE, name)], reason=StoredRemoval.Reason.PREVIEW_REVOKED
        )
        return False
    return True
