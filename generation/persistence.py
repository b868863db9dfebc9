"""Durable copies of results. fal keeps its output for about an hour; we keep ours.

With Cloudinary configured (`CLOUDINARY_URL`), each image is uploaded *from fal's URL*:
Cloudinary fetches it, so no image bytes pass through our process. The asset goes to
folder `stefna/generated` with a public id derived from the generation and the image's
index (`storage.result_name`: 160 bits no one can guess, the same on every try) and
`overwrite=True`, so doing it twice (a retry, a duplicate delivery) lands on the
same asset.

Without Cloudinary the image is streamed into Django's default storage at
`generated/<that name>.{ext}`, in chunks through a spooled temporary file (bounded
memory, however large the image).

`save_copy(...)` makes the copy without touching the database (the pipeline copies a
finished job's images first, then records everything in one transaction);
`persist(media)` does the same for an existing row and records the outcome on it (a
copy that landed after its row was deleted is named for the caller to remove).
Neither raises for a provider or network failure: they answer an Outcome. The caller
(services) schedules retries.
"""

from __future__ import annotations

import enum
import logging
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db.models import F

from . import result_urls, storage
from .models import Media

logger = logging.getLogger("generation.persistence")

CHUNK = 64 * 1024
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


class Outcome(enum.Enum):
    PERSISTED = "persisted"
    RETRY = "retry"  # failed for now; worth another try
    GONE = "gone"  # the source no longer exists: nothing more can be done


class SourceGone(Exception):
    pass


_http_client = None
_http_client_lock = threading.Lock()


def _http() -> Any:
    """One shared HTTP client (thread-safe, keeps connections alive) for fetching results.

    A fresh client per image would redo the TLS handshake and reload the CA bundle
    every time, which dominates the cost when hundreds of results arrive at once.
    Created on first use, so SSL_CERT_FILE set before then is honoured.
    """
    global _http_client
    if _http_client is None:
        import httpx

        with _http_client_lock:
            if _http_client is None:
                _http_client = httpx.Client(
                    timeout=settings.CLOUDINARY_TIMEOUT_SECONDS,
                    follow_redirects=True,
                    limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
                )
    return _http_client


def public_id_for(media: Media) -> str:
    return public_id(media.generation.kind, media.generation_id, media.index)


def public_id(kind: str, generation_id: object, index: int) -> str:
    return storage.result_name(generation_id, index)  # 160 unguessable bits, same on a retry


@dataclass(frozen=True)
class Copy:
    """Where `save_copy` put an image, or why it could not."""

    outcome: Outcome
    url: str = ""
    key: str = ""
    width: int | None = None
    height: int | None = None
    error: str = ""


def save_copy(source: str, *, public_id: str, content_type: str = "") -> Copy:
    """Copy one image somewhere durable, writing no row. Never raises for a provider,
    network or storage failure: the answer says what happened."""
    try:
        if settings.CLOUDINARY_ENABLED:
            url, key, width, height = _upload_to_cloudinary(source, public_id)
        else:
            url, key, width, height = _store_locally(source, public_id, content_type)
    except Exception as exc:
        message = _describe(exc)
        if isinstance(exc, (SourceGone, result_urls.ResultURLRefused)) or source_gone(source):
            # The result once existed and is now lost for good: loud, so staff see it.
            logger.error("%s: fal's URL is gone, the image cannot be saved (%s)", public_id, message)
            return Copy(Outcome.GONE, error=("Source gone: " + message)[:1000])
        logger.warning("%s: saving failed, will retry (%s)", public_id, message)
        return Copy(Outcome.RETRY, error=message[:1000])
    logger.info("%s persisted at %s", public_id, url)
    return Copy(Outcome.PERSISTED, url=url, key=key, width=width, height=height)


def derived_keys(generation_id: object, *, count: int) -> list[str]:
    """Every key a copy of a job's first `count` images may be stored under, whoever made
    it (`save_copy` names them by `public_id`): the Cloudinary public id, or in default
    storage the name under each extension `_store_locally` may have chosen, since which
    one it chose depends on the image and is written nowhere until a row is."""
    names = [public_id("", generation_id, index) for index in range(count)]
    if settings.CLOUDINARY_ENABLED:
        return [storage.cloudinary_key(name) for name in names]
    extensions = sorted(set(EXTENSIONS.values()) | {"png"})
    return [f"generated/{name}.{extension}" for name in names for extension in extensions]


@dataclass(frozen=True)
class Persisted:
    """What `persist` did. `surplus` names a copy it made that no row points to (the row
    was deleted meanwhile, or saved elsewhere first): the caller owes its removal."""

    outcome: Outcome
    surplus: str = ""


def persist(media: Media) -> Persisted:
    """Copy one stored image somewhere durable and mark the row persisted."""
    if media.persisted:
        return Persisted(Outcome.PERSISTED)
    copy = save_copy(media.original_url or media.url, public_id=public_id_for(media), content_type=media.content_type)
    if copy.outcome != Outcome.PERSISTED:
        Media.objects.filter(pk=media.pk).update(persist_attempts=F("persist_attempts") + 1, persist_error=copy.error)
        return Persisted(copy.outcome)
    updated = Media.objects.filter(pk=media.pk, persisted=False).update(
        url=copy.url,
        storage_key=copy.key,
        persisted=True,
        persist_error="",
        persist_attempts=F("persist_attempts") + 1,
        width=media.width or copy.width,
        height=media.height or copy.height,
    )
    if not updated and copy.key:
        # Someone else persisted it first, or the row was deleted meanwhile (its image or
        # its account, after this copy began): a copy no row points to is surplus,
        # wherever it was stored. Under the same derived name it is the row's own.
        current = Media.objects.filter(pk=media.pk).values_list("storage_key", flat=True).first()
        if current != copy.key:
            return Persisted(Outcome.PERSISTED, surplus=copy.key)
    return Persisted(Outcome.PERSISTED)


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    # Never echo a signed URL or key: Cloudinary's messages name only the file URL.
    return f"{type(exc).__name__}: {text}"[:500]


# --- Cloudinary --------------------------------------------------------------------------


def _upload_to_cloudinary(source: str, public_id: str) -> tuple[str, str, int | None, int | None]:
    storage.configure_cloudinary()
    import cloudinary.uploader

    options = {
        "folder": settings.CLOUDINARY_FOLDER,
        "public_id": public_id,
        "overwrite": True,
        "resource_type": "image",
        "type": storage.CLOUDINARY_TYPE,  # private delivery only; see generation/storage.py
        "timeout": settings.CLOUDINARY_TIMEOUT_SECONDS,
    }
    if source.startswith(("http://", "https://")):
        # Remote upload: Cloudinary fetches fal's URL itself, once we have checked it.
        result_urls.check(source)
        answer = cloudinary.uploader.upload(source, **options)
    else:
        # Our own storage (the offline provider's output): Cloudinary can't reach it.
        with _open_local(source) as file:
            answer = cloudinary.uploader.upload(file, filename=public_id, **options)
    address = storage.cloudinary_address(answer["public_id"])  # our checking view, not Cloudinary's URL
    return address, answer["public_id"], answer.get("width"), answer.get("height")


# --- Default storage ---------------------------------------------------------------------


def _store_locally(source: str, public_id: str, content_type: str) -> tuple[str, str, int | None, int | None]:
    with tempfile.SpooledTemporaryFile(max_size=1024 * 1024) as buffer:
        received_type = _copy_source(source, buffer)
        buffer.seek(0)
        width, height, sniffed = _image_info(buffer)
        buffer.seek(0)
        extension = EXTENSIONS.get(received_type or content_type) or sniffed or "png"
        name = f"generated/{public_id}.{extension}"
        saved = storage.save_over(name, File(buffer, name=name))  # like Cloudinary's overwrite=True
    return default_storage.url(saved), saved, width, height


def _copy_source(source: str, buffer: IO[bytes]) -> str:
    """Stream `source` into `buffer` chunk by chunk; the content type it declared."""
    total = 0
    if not source.startswith(("http://", "https://")):
        with _open_local(source) as file:
            for chunk in iter(lambda: file.read(CHUNK), b""):
                total += len(chunk)
                _check_size(total)
                buffer.write(chunk)
        return ""
    with result_urls.stream(_http(), source) as response:  # checked address, checked redirects
        if response.status_code in (404, 410):
            raise SourceGone(f"HTTP {response.status_code} from the result URL")
        response.raise_for_status()
        for chunk in result_urls.read_chunks(response, chunk_size=CHUNK):
            buffer.write(chunk)
        return response.headers.get("content-type", "").split(";")[0].strip()


def _check_size(total: int) -> None:
    if total > settings.MAX_RESULT_BYTES:
        raise ValueError(f"the result is larger than {settings.MAX_RESULT_BYTES} bytes")


@contextmanager
def _open_local(source: str) -> Iterator[IO[bytes]]:
    """A file in our default storage, addressed by its storage URL."""
    name = result_urls.local_name(source)  # only the offline renderer's own output
    if name is None:
        raise SourceGone(f"not a result this site may copy: {source[:100]}")
    if not default_storage.exists(name):
        raise SourceGone(f"{name} is no longer in storage")
    with default_storage.open(name, "rb") as file:
        yield file


def _image_info(buffer: IO[bytes]) -> tuple[int | None, int | None, str]:
    from PIL import Image

    try:
        with Image.open(buffer) as image:  # reads the header only
            extension = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}.get(image.format or "", "")
            return image.width, image.height, extension
    except Exception:
        raise ValueError("the result is not an image we can read") from None


def source_gone(source: str) -> bool:
    """True when the source answers 404/410 (fal deleted it). Unknown counts as not gone."""
    if not source:
        return True
    if not source.startswith(("http://", "https://")):
        name = result_urls.local_name(source)
        return name is None or not default_storage.exists(name)
    import httpx

    try:
        with result_urls.stream(_http(), source) as response:
            return response.status_code in (404, 410)
    except result_urls.ResultURLRefused:
        return True  # never fetchable: retrying would loop forever
    except httpx.HTTPError:
        return False
