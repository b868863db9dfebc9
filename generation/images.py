"""Validating and normalising uploaded photos.

An upload is judged by decoding it with Pillow, never by its name or declared type.
What we store is a fresh encode: EXIF orientation applied, metadata (GPS included)
dropped, scaled to at most MAX_SOURCE_SIDE on the long side.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import warnings
from dataclasses import dataclass

from django.conf import settings
from django.utils.translation import gettext_lazy as _
from PIL import Image, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener

from stefna.errors import InvalidInput

from .exceptions import ImageTooLarge, ImageTooManyPixels, UnsupportedImage

# iPhones save HEIC; pillow-heif teaches Pillow to open it (AVIF Pillow reads itself).
register_heif_opener()

# Formats we accept, and what we re-encode each as. MPO is what many phones call a JPEG;
# HEIF and AVIF become JPEG, which every browser and model endpoint reads.
ACCEPTED_FORMATS = {"JPEG": "JPEG", "MPO": "JPEG", "PNG": "PNG", "WEBP": "WEBP", "HEIF": "JPEG", "AVIF": "JPEG"}
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
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
        raise _too_large()
    try:
        return base64.b64decode(re.sub(r"\s+", "", value), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(_("image_base64 is not valid base64."), detail={"field": "image_base64"}) from exc


def _too_large() -> ImageTooLarge:
    limit_mb = settings.MAX_UPLOAD_BYTES / (1024 * 1024)
    return ImageTooLarge(
        _("That image is larger than %(megabytes)s MB. Please upload a smaller photo.")
        % {"megabytes": f"{limit_mb:g}"},
        detail={"max_bytes": settings.MAX_UPLOAD_BYTES},
    )


def validate_image(data: bytes) -> ValidatedImage:
    """Decode, check and normalise an uploaded photo, or raise the documented error."""
    if len(data) > settings.MAX_UPLOAD_BYTES:
        raise _too_large()
    if not data:
        raise UnsupportedImage(_("The file is empty."))
    max_pixels = settings.MAX_IMAGE_PIXELS
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
            if getattr(image, "n_frames", 1) > 1 and image.format != "MPO":
                raise UnsupportedImage(_("Animated images aren't supported. Upload a still photo."))
            image.load()
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

    output_format = ACCEPTED_FORMATS[image.format]
    upright: Image.Image = ImageOps.exif_transpose(image) or image
    picture = _to_web_mode(upright, output_format)
    picture.thumbnail((settings.MAX_SOURCE_SIDE, settings.MAX_SOURCE_SIDE), Image.Resampling.LANCZOS)

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
    return ValidatedImage(
        content=content,
        format=output_format,
        width=picture.width,
        height=picture.height,
        sha256=hashlib.sha256(content).hexdigest(),
    )


def _too_many_pixels(width: int, height: int) -> ImageTooManyPixels:
    limit = settings.MAX_IMAGE_PIXELS
    return ImageTooManyPixels(
        _("That image is %(width)s×%(height)s pixels; the limit is %(megapixels)s megapixels.")
        % {"width": width, "height": height, "megapixels": limit // 1_000_000},
        detail={"max_pixels": limit, "width": width, "height": height},
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
