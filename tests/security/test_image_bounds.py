"""Photos are judged from their header before any decoding: over 25 megapixels is
`image_too_large` naming the limit; accepted photos are stored no larger than the
models use, upright and without metadata."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from generation.exceptions import ImageTooLarge
from generation.images import validate_image

from .conftest import STYLE_SLUG, assert_error, snapshot


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG declaring `width`×`height`: refusing it needs the header alone."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_the_default_pixel_limit_is_25_megapixels():
    assert settings.MAX_IMAGE_PIXELS == 25_000_000


def test_just_over_25_megapixels_is_refused_from_the_header_with_the_limit_named():
    with pytest.raises(ImageTooLarge) as refused:
        validate_image(_png_header_only(5001, 5000))
    assert refused.value.code == "image_too_large" and refused.value.status == 413
    assert "25 megapixels" in refused.value.message
    assert refused.value.detail["max_pixels"] == 25_000_000


@pytest.mark.django_db
def test_the_api_answers_413_image_too_large_for_a_39_megapixel_photo(api_client, user, style, funded):
    before = snapshot(user)
    photo = SimpleUploadedFile("big.png", _png_header_only(7700, 5130), content_type="image/png")
    response = api_client.post("/api/generations", {"image": photo, "preset": STYLE_SLUG})
    body = assert_error(response, 413, "image_too_large")
    assert "25 megapixels" in body["message"]
    assert snapshot(user) == before


def _jpeg(width: int, height: int, *, orientation: int = 1) -> bytes:
    picture = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x8825] = {2: (1.0, 2.0, 3.0)}  # a GPS block, which must not survive
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=80, exif=exif.tobytes())
    return buffer.getvalue()


def test_a_maximal_photo_is_accepted_and_stored_at_the_models_size_upright_without_metadata():
    validated = validate_image(_jpeg(6000, 4160, orientation=6))  # 24.96 MP, "rotate 90°"
    assert max(validated.width, validated.height) == settings.MAX_SOURCE_SIDE
    # Orientation 6 turns the landscape sensor image into a portrait photo.
    assert validated.height > validated.width
    stored = Image.open(io.BytesIO(validated.content))
    assert stored.size == (validated.width, validated.height)
    assert not stored.getexif(), "EXIF (orientation, GPS) is dropped once applied"


def test_a_large_png_with_alpha_is_reduced_and_keeps_its_alpha():
    buffer = io.BytesIO()
    Image.new("RGBA", (5000, 4000), (10, 20, 30, 128)).save(buffer, "PNG")
    validated = validate_image(buffer.getvalue())
    assert max(validated.width, validated.height) == settings.MAX_SOURCE_SIDE
    stored = Image.open(io.BytesIO(validated.content))
    assert stored.mode == "RGBA"
    red, green, blue, alpha = stored.getpixel((10, 10))
    assert alpha == 128 and abs(red - 10) <= 2 and abs(green - 20) <= 2 and abs(blue - 30) <= 2
