"""Names and delivery of stored images: unguessable, and private unless made public.

Names. Every stored object gets at least 128 bits of randomness in its name:
- a source photo: `sources/<160 random bits>.<ext>`;
- a result: `generated/<name>.<ext>` locally, `stefna/generated/<name>` at Cloudinary,
  where `<name>` is an HMAC of the generation id and image index under a key derived
  from SECRET_KEY (160 bits). It must be derivable, not drawn: the pipeline copies a
  result before its row exists, and a retry after a crash must land on the same name
  (both stores overwrite) rather than leave an orphan. Without the secret a name
  cannot be derived from the generation id the way `{kind}_{id}_{n}` could.
- a result renamed when it is made private again or taken down: a fresh random name, so that any
  address that leaked (or that a CDN cached) while it was public stops working.

Delivery. Source photos and private results reach only their owner and staff:
- local files through `stefna.media.serve_media`, which checks ownership per request;
- files in an S3-compatible bucket through the same view, which redirects to a
  presigned URL (stefna/private_storage.py: every object private, no bucket address
  ever rendered): PRIVATE_URL_SECONDS for a private file, a little over the redirect's
  cache lifetime for a public one;
- Cloudinary assets are uploaded as `type=authenticated` (never public `upload`), and
  addressed as `/images/<public id>`: that view redirects the owner (or staff) to a
  signed download URL that expires in PRIVATE_URL_SECONDS, and anyone to the signed
  delivery URL when the image is public (stable and cacheable by a CDN).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from typing import Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db.models import Model, QuerySet

from .models import Generation, Media
from .providers.local import OFFLINE_FOLDER

logger = logging.getLogger("generation.storage")

RESULTS_FOLDER = "generated"
# Share previews of public results in default storage (generation/previews.py).
PREVIEWS_FOLDER = "previews"
SOURCES_FOLDER = "sources"
CLOUDINARY_TYPE = "authenticated"
PRIVATE_URL_SECONDS = 300
PUBLIC_CACHE_SECONDS = 3600


def random_name() -> str:
    return secrets.token_hex(20)  # 160 bits


def source_name(*, extension: str) -> str:
    return f"{SOURCES_FOLDER}/{random_name()}.{extension}"


def result_name(generation_id: object, index: int) -> str:
    key = hmac.new(settings.SECRET_KEY.encode(), b"stefna result names", hashlib.sha256).digest()
    return hmac.new(key, f"{generation_id}:{index}".encode(), hashlib.sha256).hexdigest()[:40]


def preview_key(storage_key: str) -> str | None:
    """Where a result stored in default storage keeps its share preview: its own key with a
    prefix and a suffix, so the preview names its image exactly (and dies with the name
    when the image moves). None for a Cloudinary asset, whose preview is a transformation."""
    if not storage_key or is_cloudinary_key(storage_key):
        return None
    return f"{PREVIEWS_FOLDER}/{storage_key}.jpg"


def key_of_preview(name: str) -> str | None:
    """The result key a preview's name was made from; None if `name` is not one."""
    prefix, suffix = f"{PREVIEWS_FOLDER}/", ".jpg"
    if not (name.startswith(prefix) and name.endswith(suffix)):
        return None
    key = name[len(prefix) : -len(suffix)]
    return key if key.startswith(f"{RESULTS_FOLDER}/") else None


# --- Who may see what ----------------------------------------------------------------------


def media_is_public(media: Media) -> bool:
    """Anyone may see it: shared, not taken down, and its generation not deleted."""
    return media.is_public and not media.hidden and media.generation.deleted_at is None


def may_view_media(user: Any, media: Media) -> bool:
    if media_is_public(media):
        return True
    return bool(user and user.is_authenticated and (user.is_staff or media.user_id == user.pk))


def may_view_generation_source(user: Any, generation: Generation) -> bool:
    return bool(user and user.is_authenticated and (user.is_staff or generation.user_id == user.pk))


def media_for_name(name: str) -> Media | None:
    """The result stored locally as `name`: its storage key (indexed), or for the offline
    preview's own output files (offline/...), the address it was made at."""
    if name.startswith(f"{OFFLINE_FOLDER}/"):
        # Offline preview only (no FAL_KEY). original_url is not indexed: in production it
        # holds fal's addresses, which may be too long for a B-tree entry.
        found = Media.objects.filter(original_url=settings.MEDIA_URL + name)
    else:
        found = Media.objects.filter(storage_key=name)
    return _any(_with_generation(found))


def media_for_cloudinary(public_id: str) -> Media | None:
    return _any(_with_generation(Media.objects.filter(storage_key=public_id, persisted=True)))


def _with_generation(media: QuerySet[Media]) -> QuerySet[Media]:
    # Serving a file reads only whether its generation was deleted: its prompts, logs and
    # payload stay in the database (one of these per image request).
    return media.select_related("generation").defer(*Media.GENERATION_DETAILS)


def generation_for_source(name: str) -> Generation | None:
    return _any(Generation.objects.filter(source_image=name))


def _any[ModelT: Model](queryset: QuerySet[ModelT]) -> ModelT | None:
    """The row a file name belongs to. Unordered: with `.first()`'s ORDER BY a planner may
    walk the ordering index and test every row instead of seeking the name's index."""
    return next(iter(queryset.order_by()[:1]), None)


# --- Presigned URLs (S3-compatible storage) -------------------------------------------------


def presigned_address(name: str, *, seconds: int) -> str | None:
    """A signed, expiring GET URL of a stored file where the storage makes them (a
    bucket); None for local files, which our view streams itself."""
    presign = getattr(default_storage, "presigned_url", None)
    return None if presign is None else str(presign(name, seconds=seconds))


def delivery_seconds(*, public: bool) -> int:
    # A public redirect may be cached for PUBLIC_CACHE_SECONDS, so the URL it points at
    # must outlive that; a private one is fresh on every request.
    return 2 * PUBLIC_CACHE_SECONDS if public else PRIVATE_URL_SECONDS


# --- Cloudinary ----------------------------------------------------------------------------


# Where the checking view for Cloudinary results is routed (stefna/urls.py). Stored in
# every such result's `url`, so it is fixed: change it only with a data migration.
CLOUDINARY_PATH = "images/"


def cloudinary_address(public_id: str) -> str:
    """What a Cloudinary result's `url` is: our checking view, never Cloudinary's own URL."""
    return f"/{CLOUDINARY_PATH}{public_id}"


def cloudinary_redirect(media: Media, *, public: bool) -> str:
    """Where the view sends the browser for a Cloudinary asset."""
    configure_cloudinary()
    import cloudinary.utils

    if public:
        # Signed delivery URL of the authenticated asset: stable (the CDN caches it),
        # and dead once the asset is renamed (made private again).
        url, _ = cloudinary.utils.cloudinary_url(
            media.storage_key, type=CLOUDINARY_TYPE, sign_url=True, secure=True, format=_format(media)
        )
        return str(url)
    return str(
        cloudinary.utils.private_download_url(
            media.storage_key,
            _format(media),
            type=CLOUDINARY_TYPE,
            expires_at=int(time.time()) + PRIVATE_URL_SECONDS,
        )
    )


def cloudinary_preview_url(media: Media, *, size: tuple[int, int] | None, bound: int) -> str:
    """A public image's share preview at Cloudinary: a signed delivery URL of the same
    asset with a transformation (JPEG, automatic quality, scaled to exactly `size`), so no copy
    is stored. Like the full image's delivery URL it dies when the asset is renamed (made
    private, taken down) or destroyed. Without a known size, it is limited to `bound`."""
    configure_cloudinary()
    import cloudinary.utils

    if size is None:
        resize: dict[str, Any] = {"crop": "limit", "width": bound, "height": bound}
    elif (size[0], size[1]) != (media.width, media.height):
        # Both sides given, from the true ratio: the og:image:width/height we write are
        # then exactly what Cloudinary sends, whatever its own rounding would be.
        resize = {"crop": "scale", "width": size[0], "height": size[1]}
    else:
        resize = {}
    url, _ = cloudinary.utils.cloudinary_url(
        media.storage_key,
        type=CLOUDINARY_TYPE,
        sign_url=True,
        secure=True,
        format="jpg",
        # auto:eco, the lighter end of Cloudinary's automatic quality: a chat's preview
        # card is small, and WhatsApp drops images over about 300 KB.
        transformation=[resize, {"quality": "auto:eco"}] if resize else [{"quality": "auto:eco"}],
    )
    return str(url)


def _format(media: Media) -> str:
    return {"image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}.get(media.content_type, "png")


# --- Moving and removing stored results ------------------------------------------------------
#
# Storage calls only: which rows say what, and what is still owed when a call fails, is
# generation/services/revoke.py's.


def fresh_key(old_key: str) -> str:
    """A fresh random name for a stored result whose old name must stop answering (made
    private, taken down): any address that leaked while it was public, or a copy a CDN
    cached, dies with the old name."""
    if is_cloudinary_key(old_key):
        return cloudinary_key(random_name())
    extension = old_key.rsplit(".", 1)[-1] if "." in old_key.rsplit("/", 1)[-1] else "png"
    folder = old_key.rsplit("/", 1)[0] if "/" in old_key else RESULTS_FOLDER
    return f"{folder}/{random_name()}.{extension}"


def move_stored(old_key: str, new_key: str) -> tuple[str, str]:
    """Move a stored result from `old_key` to `new_key`; its (key, url) afterwards.

    Raises when storage fails. Safe to repeat with the same names: when nothing is left
    under `old_key`, an earlier call got through (its answer may have been lost), so the
    result is taken to be at `new_key`; either way nothing answers at the old name.
    """
    if is_cloudinary_key(old_key):
        return _cloudinary_move(old_key, new_key), cloudinary_address(new_key)
    return _local_move(old_key, new_key)


def _cloudinary_move(old_key: str, new_key: str) -> str:
    import cloudinary.exceptions

    try:
        return _cloudinary_rename(old_key, new_key=new_key)
    except cloudinary.exceptions.NotFound:
        pass
    try:
        # Stored before uploads were private: the public `upload` type (see media_move_unguessable).
        return _cloudinary_rename(old_key, new_key=new_key, from_type="upload")
    except cloudinary.exceptions.NotFound:
        logger.warning("%s is no longer at Cloudinary under its old name; taking it to be at %s", old_key, new_key)
        return new_key


def _local_move(old_key: str, new_key: str) -> tuple[str, str]:
    if not default_storage.exists(old_key):
        logger.warning("%s is no longer in storage; taking it to be at %s", old_key, new_key)
        return new_key, default_storage.url(new_key)
    with default_storage.open(old_key, "rb") as file:
        saved = save_over(new_key, file)  # over a copy an interrupted earlier try left half made
    default_storage.delete(old_key)
    return saved, default_storage.url(saved)


def save_over(name: str, content: File) -> str:
    """Save `content` at exactly `name` in the default storage, replacing what is there
    (as Cloudinary's `overwrite=True` does), and return `name`.

    Local storage never overwrites: it saves under another name when `name` is taken. So
    two writers of the same name (two workers copying one image, a retry racing a
    stalled try) that both found it free would leave a second file nobody points to. The
    writers of a name all write the same image, so the one that lost keeps the winner's
    file and removes its own."""
    if default_storage.exists(name):
        default_storage.delete(name)
    saved = default_storage.save(name, content)
    if saved != name:
        default_storage.delete(saved)
    return name


def remove_stored(where: str, key: str) -> None:
    """Remove a stored object for good; raises when storage fails. Removing what is
    already gone succeeds (Cloudinary answers "not found", storages delete quietly)."""
    if where == "cloudinary":
        destroy_cloudinary_asset(key)
    else:
        default_storage.delete(key)


def _cloudinary_rename(old_key: str, *, new_key: str, from_type: str = CLOUDINARY_TYPE) -> str:
    configure_cloudinary()
    import cloudinary.uploader

    answer = cloudinary.uploader.rename(
        old_key,
        new_key,
        type=from_type,
        to_type=CLOUDINARY_TYPE,
        invalidate=True,
        timeout=settings.CLOUDINARY_TIMEOUT_SECONDS,
    )
    return str(answer["public_id"])


# --- Renaming what was stored under guessable names -------------------------------------

UNGUESSABLE = re.compile(r"(?:^|/)[0-9a-f]{40}(?:\.[a-z0-9]+)?$")


def is_unguessable(key: str) -> bool:
    return bool(UNGUESSABLE.search(key))


def source_copy_unguessable(generation: Generation) -> tuple[str, str] | None:
    """Copy a source photo stored under an old, guessable name to a fresh one: (old, new),
    or None if there is nothing to do. Rows are the caller's (services.revoke)."""
    old = generation.source_image.name
    if not old or is_unguessable(old) or not default_storage.exists(old):
        return None
    extension = old.rsplit(".", 1)[-1].lower() if "." in old else "jpg"
    with default_storage.open(old, "rb") as file:
        new = default_storage.save(source_name(extension=extension), file)
    return old, new


def media_move_unguessable(media: Media) -> tuple[str, str] | None:
    """Move a stored result from an old name (`{kind}_{generation id}_{n}`, and at
    Cloudinary the public `upload` type) to a random name and private delivery: (the new
    key, its address), or None if there is nothing to do. Rows are the caller's."""
    old = media.storage_key
    if not (media.persisted and old) or is_unguessable(old):
        return None
    if is_cloudinary_key(old):
        new = _cloudinary_rename(old, new_key=fresh_key(old), from_type="upload")
        return new, cloudinary_address(new)
    if not default_storage.exists(old):
        return None
    return _local_move(old, fresh_key(old))


# --- Cloudinary ------------------------------------------------------------------------


def configure_cloudinary() -> Any:
    """The cloudinary SDK, configured from settings (which parsed CLOUDINARY_URL)."""
    import cloudinary

    options: dict[str, Any] = {
        "cloud_name": settings.CLOUDINARY_CLOUD_NAME,
        "api_key": settings.CLOUDINARY_API_KEY,
        "api_secret": settings.CLOUDINARY_API_SECRET,
        "secure": True,
    }
    if settings.CLOUDINARY_UPLOAD_PREFIX:
        options["upload_prefix"] = settings.CLOUDINARY_UPLOAD_PREFIX
    cloudinary.config(**options)
    return cloudinary


def destroy_cloudinary_asset(public_id: str) -> None:
    configure_cloudinary()
    import cloudinary.uploader

    answer = cloudinary.uploader.destroy(
        public_id, type=CLOUDINARY_TYPE, invalidate=True, timeout=settings.CLOUDINARY_TIMEOUT_SECONDS
    )
    if answer.get("result") == "not found":  # stored before uploads were private
        cloudinary.uploader.destroy(public_id, invalidate=True, timeout=settings.CLOUDINARY_TIMEOUT_SECONDS)


def cloudinary_key(name: str) -> str:
    """The public id of a result named `name` in our Cloudinary folder."""
    return f"{settings.CLOUDINARY_FOLDER.rstrip('/')}/{name}"


def is_cloudinary_key(key: str) -> bool:
    return key.startswith(cloudinary_key(""))
