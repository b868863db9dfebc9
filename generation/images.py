"""Validating and normalising uploaded photos.

An upload is judged by decoding it with Pillow, never by its name or declared type.
What we store is a fresh encode: EXIF orientation applied, metadata (GPS included)
dropped, scaled to at most MAX_SOURCE_SIDE on the long side.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import ctypes
import ctypes.util
import functools
import hashlib
import io
import re
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from PIL import AvifImagePlugin, Image, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener

from stefna.errors import InvalidInput

from . import png_strips, webp_scaled
from .exceptions import ImageTooLarge, ImageTooManyPixels, UnsupportedImage

# iPhones save HEIC; pillow-heif teaches Pillow to open it (AVIF Pillow reads itself).
register_heif_opener()
# libavif decodes with one thread: its decoding threads each hold frame buffers of the
# full size, and uploads are decoded one at a time anyway (IMAGE_DECODE_CONCURRENCY).
AvifImagePlugin.DEFAULT_MAX_THREADS = 1

# Formats we accept, and what we re-encode each as. MPO is what many phones call a JPEG;
# HEIF and AVIF become JPEG, which every browser and model endpoint reads.
ACCEPTED_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WEBP", "HEIF": "JPEG", "AVIF": "JPEG"}
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_decode_slots: threading.BoundedSemaphore | None = None
_decode_slots_lock = threading.Lock()


def decode_slot() -> threading.BoundedSemaphore:
    """The per-process limit on images being decoded and re-encoded at once
    (IMAGE_DECODE_CONCURRENCY): uploaded photos here, and stored results made into share
    previews (generation/previews.py)."""
    global _decode_slots
    if _decode_slots is None:
        with _decode_slots_lock:
            if _decode_slots is None:
                _decode_slots = threading.BoundedSemaphore(max(1, settings.IMAGE_DECODE_CONCURRENCY))
    return _decode_slots


DATA_URI = re.compile(r"^data:(?P<type>[\w/+.-]+)?(?:;[\w=-]+)*;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class ValidatedImage:
    content: bytes
    format: str
    width: int
    height: int
    sha256: str

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.format]


def decode_base64_image(value: str) -> bytes:
    """Bytes from a data URI or bare base64; InvalidInput when it is neither."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(_("image_base64 is empty."), detail={"field": "image_base64"})
    value = value.strip()
    match = DATA_URI.match(value)
    if match:
        value = value[match.end() :]
    elif value.startswith("data:"):
        raise InvalidInput(_("image_base64 is a data URI without ';base64,'."), detail={"field": "image_base64"})
    # Rough size check before decoding, so a huge string is refused without allocating its bytes.
    if len(value) * 3 // 4 > settings.MAX_UPLOAD_BYTES + 3:
        raise image_too_large()
    try:
        return base64.b64decode(re.sub(r"\s+", "", value), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(_("image_base64 is not valid base64."), detail={"field": "image_base64"}) from exc


def image_too_large() -> ImageTooLarge:
    """The 413 for a photo over MAX_UPLOAD_BYTES, in the asker's language."""
    limit_mb = settings.MAX_UPLOAD_BYTES / (1024 * 1024)
    return ImageTooLarge(
        _("That image is larger than %(megabytes)s MB. Please upload a smaller photo.")
        % {"megabytes": f"{limit_mb:g}"},
        detail={"max_bytes": settings.MAX_UPLOAD_BYTES},
    )


def validate_image(data: bytes) -> ValidatedImage:
    """Decode, check and normalise an uploaded photo, or raise the documented error.

    The header is read first (Pillow's open() decodes no pixels): format and pixel
    count are judged before any decoding, so a 100-megapixel file costs nothing. An
    accepted photo is decoded at the smallest scale that still covers MAX_SOURCE_SIDE
    (JPEG's DCT scaling, PNG strips, libwebp's scaling; AVIF only whole, under its own
    lower limit), decoded and re-encoded one of IMAGE_DECODE_CONCURRENCY at a time per
    process, and scaled down before it is rotated upright.
    """
    if len(data) > settings.MAX_UPLOAD_BYTES:
        raise image_too_large()
    if not data:
        raise UnsupportedImage(_("The file is empty."))
    max_pixels = settings.MAX_IMAGE_PIXELS
    # The slot is held from the decode through the re-encode: a WebP encode of the reduced
    # picture costs about as much memory as a scaled decode, and eight at once would add up.
    with contextlib.ExitStack() as held:
        try:
            with warnings.catch_warnings():
                # Pillow only warns between 1x and 2x its limit; we refuse anything over ours.
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))
                if image.format not in ACCEPTED_FORMATS:
                    raise UnsupportedImage(
                        _("%(format)s images aren't supported. Upload a JPEG, PNG, WebP, HEIC or AVIF photo.")
                        % {"format": image.format or "That"},
                        detail={"format": image.format},
                    )
                width, height = image.size
                if width * height > max_pixels:
                    raise _too_many_pixels(width, height)
                if image.format == "AVIF" and width * height > settings.MAX_AVIF_PIXELS:
                    raise _too_many_avif_pixels(width, height)
                if getattr(image, "n_frames", 1) > 1 and image.format != "MPO":
                    raise UnsupportedImage(_("Animated images aren't supported. Upload a still photo."))
                output_format = ACCEPTED_FORMATS[image.format]
                held.enter_context(decode_slot())
                picture = _decode_scaled(image, output_format, data)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooManyPixels(
                _("That image has too many pixels (the limit is %(megapixels)s megapixels).")
                % {"megapixels": max_pixels // 1_000_000},
                detail={"max_pixels": max_pixels},
            ) from exc
        except UnidentifiedImageError as exc:
            raise UnsupportedImage() from exc
        except (OSError, SyntaxError, ValueError) as exc:
            # Truncated or corrupt files fail here, while decoding.
            raise UnsupportedImage(_("That image is damaged or incomplete and can't be read.")) from exc

        buffer = io.BytesIO()
        # A fresh save without exif=/icc=/pnginfo= drops every piece of metadata, GPS included;
        # but Pillow copies a JPEG's COM comment from `image.info` unless told `comment=b""`.
        if output_format == "JPEG":
            # No optimize=True: its CPU per upload buys only a few percent of size (bench/README.md).
            picture.save(buffer, "JPEG", quality=92, comment=b"")
        elif output_format == "PNG":
            picture.save(buffer, "PNG", optimize=False)
        else:
            picture.save(buffer, "WEBP", quality=92)
        content = buffer.getvalue()
        width, height = picture.size
        del image, picture
        release_freed_memory()
    return ValidatedImage(
        content=content,
        format=output_format,
        width=width,
        height=height,
        sha256=hashlib.sha256(content).hexdigest(),
    )


@functools.cache
def _libc_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    library = ctypes.CDLL(name) if name else None
    return getattr(library, "malloc_trim", None)


def release_freed_memory() -> bool:
    """Hand the pages the decode and encode freed back to the OS (glibc's malloc_trim).

    glibc gives each thread its own heap, keeps what a thread freed there for its next
    allocation, and raises its mmap threshold after large frees, so buffers of a few tens
    of MB (libwebp's, libavif's, the encoders') stay resident in every request thread
    that once decoded a photo: eight threads decoding one at a time still grew by eight
    decodes' worth. Called while the decode slot is held. False where there is no glibc.
    """
    trim = _libc_malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def _decode_scaled(image: Image.Image, output_format: str, data: bytes) -> Image.Image:
    """The photo decoded, at most MAX_SOURCE_SIDE on its long side, upright, in a web mode."""
    side = settings.MAX_SOURCE_SIDE
    factor = max(image.size) // side
    strips = png_strips.reduced_png(data, factor=factor) if image.format == "PNG" and factor >= 2 else None
    scaled = webp_scaled.reduced_webp(data, factor=factor) if image.format == "WEBP" and factor >= 2 else None
    if scaled is not None:
        # A big WebP is decoded by libwebp at the reduced size (Pillow's whole decode
        # keeps several full-size copies at once; see generation/webp_scaled.py).
        orientation = image.getexif().get(0x0112, 1)
        image.close()
        image, factor = scaled, 1
    elif strips is not None:
        # A big PNG is decoded and reduced a strip at a time (a full-size RGBA decode
        # is 100 MB at the pixel limit); the full-size image is never made. Its EXIF is
        # read from the file: Pillow's PNG getexif() decodes the whole image first.
        orientation = png_strips.exif(data).get(0x0112, 1)
        image.close()
        image, factor = strips, 1
    else:
        orientation = image.getexif().get(0x0112, 1)
        if image.format in ("JPEG", "MPO"):
            # Ask the JPEG decoder for a 1/2, 1/4 or 1/8 scale that still covers `side`:
            # a quarter or less of the memory and time of a full decode.
            image.draft("RGB" if image.mode not in ("L", "CMYK") else image.mode, (side, side))
        image.load()
        if image.format == "AVIF":
            # libavif's decoder keeps the decoded full-size YUV planes until it is freed,
            # and Pillow frees it only with the image: after the upload's re-encode, outside
            # the decode slot, so the next decode would overlap it.
            image._decoder = None  # type: ignore[attr-defined]
        factor = max(image.size) // side
    if factor >= 2:
        # Box-reduce by a whole factor first (cheap, and no premultiplied full-size copy
        # for RGBA as resize() makes), then free the full-size pixels at once.
        if "A" in image.mode:
            # Pillow premultiplies alpha into a full-size copy to reduce; band by band
            # needs only one band's worth (a quarter) at a time.
            mode = image.mode
            bands = [image.getchannel(index).reduce(factor) for index in range(len(mode))]
            image.close()
            reduced = Image.merge(mode, bands)
        else:
            reduced = image.reduce(factor)
            image.close()
        image = reduced
    picture = _to_web_mode(image, output_format)
    picture.thumbnail((side, side), Image.Resampling.LANCZOS)
    # Rotate the small picture, not the full-size one; the orientation tag is read
    # from the original because thumbnail() and convert() drop it.
    if orientation != 1:
        picture.getexif()[0x0112] = orientation
        picture.info["exif"] = picture.getexif().tobytes()
        picture = ImageOps.exif_transpose(picture) or picture
    return picture


def _too_many_pixels(width: int, height: int) -> ImageTooManyPixels:
    limit = settings.MAX_IMAGE_PIXELS
    return ImageTooManyPixels(
        _("That image is %(width)s×%(height)s pixels; the limit is %(megapixels)s megapixels.")
        % {"width": width, "height": height, "megapixels": limit // 1_000_000},
        detail={"max_pixels": limit, "width": width, "height": height},
    )


# What the studio page's script refused before upload (stefna.js `refuse`), as it names it.
_REFUSED_PIXELS = re.compile(r"too_many_pixels:(?P<width>\d{1,6})x(?P<height>\d{1,6})")


def refused_in_browser(reason: str) -> str | None:
    """The words this module would have said about a photo the studio page refused before
    uploading it, from the reason the page sends (`not_image`, `too_large`,
    `too_many_pixels:<width>x<height>`), or None for anything else.

    The page empties the file input when it refuses a file, so without this the form
    only learns that no photo came and says "choose a photo", losing the reason.
    """
    if reason == "not_image":
        return UnsupportedImage().message
    if reason == "too_large":
        return image_too_large().message
    if match := _REFUSED_PIXELS.fullmatch(reason):
        return _too_many_pixels(int(match["width"]), int(match["height"])).message
    return None


def _too_many_avif_pixels(width: int, height: int) -> ImageTooManyPixels:
    limit = settings.MAX_AVIF_PIXELS
    return ImageTooManyPixels(
        _(
            "That AVIF image is %(width)s×%(height)s pixels; AVIF photos can be at most %(megapixels)s "
            "megapixels. Save it as a JPEG, or as a smaller AVIF."
        )
        % {"width": width, "height": height, "megapixels": f"{limit / 1_000_000:g}"},
        detail={"max_pixels": limit, "width": width, "height": height, "format": "AVIF"},
    )


def _to_web_mode(image: Image.Image, output_format: str) -> Image.Image:
    """RGB (or RGBA where the format keeps alpha): CMYK, 16-bit and palette images convert."""
    keeps_alpha = output_format in ("PNG", "WEBP")
    if image.mode in ("RGB",):
        return image
    if image.mode == "RGBA" and keeps_alpha:
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits before converting, or it saturates to white.
        image = image.point(lambda value: value / 256).convert("L")
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha and keeps_alpha:
        return image.convert("RGBA")
    return image.convert("RGB")
