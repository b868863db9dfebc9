"""Share previews: the picture a shared link unfurls with (og:image), small enough for
every unfurler.

WhatsApp drops preview images over about 300 KB, and a result is often a PNG of several
megabytes. So a public image's share page points og:image at a JPEG of at most
PREVIEW_MAX_SIDE px a side:

- at Cloudinary, a delivery transformation of the asset itself (storage.cloudinary_preview_url):
  nothing is stored, and the signed URL dies with the asset's name, as the full image's does;
- in default storage (local files, an S3-compatible bucket), a derived copy at
  `previews/<the result's key>.jpg`, made the first time it is asked for (a crawler
  fetching og:image) through the same checking address as every result
  (`/media/previews/…`, stefna/media.py), which answers it only while the image is
  public. Its name is derived from the result's key, so when the image is made private
  or taken down (its file moves to a fresh name) the preview no longer names any image
  and answers 404 at once; its file is owed for removal then, and when the image or the
  account is deleted (generation/services/revoke.py).

og:image:width/height are computed from the image's recorded size and the preview is
made at exactly that size, so what the tags say is what is sent.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image

from . import images, storage
from .models import Media

PREVIEW_MAX_SIDE = 1200
# Well under WhatsApp's ~300 KB: the quality steps down until the JPEG fits.
PREVIEW_MAX_BYTES = 250_000
QUALITIES = (82, 72, 62, 52, 42, 35, 28)
CONTENT_TYPE = "image/jpeg"


@dataclass(frozen=True)
class SharePreview:
    url: str  # relative for our own addresses; the page makes it absolute
    width: int | None
    height: int | None
    content_type: str = CONTENT_TYPE


def preview_size(width: int | None, height: int | None) -> tuple[int, int] | None:
    """The preview's size for an image of `width`×`height`: within PREVIEW_MAX_SIDE a
    side, never enlarged. None when the image's size is unknown."""
    if not width or not height:
        return None
    scale = min(1.0, PREVIEW_MAX_SIDE / width, PREVIEW_MAX_SIDE / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def share_preview(media: Media) -> SharePreview | None:
    """The preview to put in a *public* image's og:image; None when there is none to
    offer (not copied yet: fal's address, which expires anyway). The caller checks the
    image is public: a private image gets no preview address at all."""
    if not (media.persisted and media.storage_key):
        return None
    size = preview_size(media.width, media.height)
    width, height = size if size else (None, None)
    if storage.is_cloudinary_key(media.storage_key):
        url = storage.cloudinary_preview_url(media, size=size, bound=PREVIEW_MAX_SIDE)
        return SharePreview(url, width, height)
    name = storage.preview_key(media.storage_key)
    if name is None or storage.key_of_preview(name) is None:
        return None  # not under generated/: no preview address can find it again
    return SharePreview(default_storage.url(name), width, height)


def preview_exists(media: Media) -> bool:
    name = storage.preview_key(media.storage_key)
    return name is not None and default_storage.exists(name)


def preview_save(media: Media) -> str:
    """Make the preview of a result in default storage and save it (over any earlier
    one); its name. Raises when the result cannot be read. Writes no row."""
    name = storage.preview_key(media.storage_key)
    if name is None:
        raise ValueError("a Cloudinary asset's preview is a transformation, not a file")
    with images.decode_slot(), default_storage.open(media.storage_key, "rb") as file:
        data = _encode(file, size=preview_size(media.width, media.height))
    return storage.save_over(name, ContentFile(data, name=name))


def _encode(file: object, *, size: tuple[int, int] | None) -> bytes:
    with Image.open(file) as image:  # type: ignore[arg-type]
        target = size or preview_size(image.width, image.height) or (image.width, image.height)
        if image.format == "JPEG":
            image.draft("RGB", target)  # decode at a reduced scale where JPEG allows
        picture = image.convert("RGBA") if image.mode in ("RGBA", "LA", "P", "PA") else image.convert("RGB")
    if picture.mode == "RGBA":
        # JPEG has no transparency: what shows through is white, as on the page.
        flat = Image.new("RGB", picture.size, (255, 255, 255))
        flat.paste(picture, mask=picture.getchannel("A"))
        picture = flat
    if picture.size != target:
        picture = picture.resize(target, Image.Resampling.LANCZOS)
    data = b""
    for quality in QUALITIES:
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=quality, optimize=True)
        data = buffer.getvalue()
        if len(data) <= PREVIEW_MAX_BYTES:
            break
    return data
