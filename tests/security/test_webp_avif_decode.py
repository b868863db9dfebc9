"""Large WebPs are decoded by libwebp at reduced scale (the full-size picture never
exists); AVIF, which only decodes whole, has its own lower pixel limit, refused as
`image_too_large` naming that limit in the caller's language."""

from __future__ import annotations

import io
import platform

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import translation
from PIL import AvifImagePlugin, Image, ImageChops, ImageStat

from generation import webp_scaled
from generation.exceptions import ImageTooLarge
from generation.images import release_freed_memory, validate_image

from .conftest import STYLE_SLUG, assert_error, snapshot


def _photo(width: int, height: int) -> Image.Image:
    return Image.effect_noise((width // 8, height // 8), 60).convert("RGB").resize((width, height))


def _webp(picture: Image.Image, **options) -> bytes:
    # The encoder's fastest effort (method 0; in lossless mode `quality` is effort too):
    # what is tested is the decoding, and the default effort spent 5 s of CPU on the
    # 14-megapixel lossless one. The bitstream is still lossy VP8 or lossless VP8L.
    options = {"method": 0, **({"quality": 0} if options.get("lossless") else {}), **options}
    buffer = io.BytesIO()
    picture.save(buffer, "WEBP", **options)
    return buffer.getvalue()


def _avif(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(buffer, "AVIF", quality=50, speed=10)
    return buffer.getvalue()


def test_libwebp_is_reachable_where_pillow_loaded_it():
    assert webp_scaled.available()


@pytest.mark.parametrize("options", [{"quality": 90}, {"lossless": True}])
def test_a_large_webp_is_decoded_at_reduced_scale_like_pillows_whole_decode(options):
    data = _webp(_photo(4600, 3000), **options)
    reduced = webp_scaled.reduced_webp(data, factor=2)
    assert reduced is not None and reduced.mode == "RGB" and reduced.size == (2300, 1500)
    reference = Image.open(io.BytesIO(data)).convert("RGB").reduce(2)
    difference = ImageStat.Stat(ImageChops.difference(reduced, reference)).mean
    assert max(difference) < 2, difference


def test_a_large_webp_with_alpha_keeps_its_alpha_and_is_stored_at_the_models_size():
    picture = Image.new("RGBA", (5000, 3400), (10, 20, 30, 128))
    validated = validate_image(_webp(picture, quality=90))
    assert validated.format == "WEBP"
    assert max(validated.width, validated.height) == settings.MAX_SOURCE_SIDE
    stored = Image.open(io.BytesIO(validated.content))
    assert stored.mode == "RGBA"
    red, green, blue, alpha = stored.getpixel((10, 10))
    assert abs(alpha - 128) <= 2 and abs(red - 10) <= 3 and abs(green - 20) <= 3 and abs(blue - 30) <= 3


def test_a_large_webps_orientation_is_applied_and_its_metadata_dropped():
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90°": the landscape sensor image is a portrait photo
    data = _webp(_photo(4800, 3200), quality=80, exif=exif.tobytes())
    validated = validate_image(data)
    assert validated.height == settings.MAX_SOURCE_SIDE and abs(validated.width - 1365) <= 1
    assert not Image.open(io.BytesIO(validated.content)).getexif()


def test_a_damaged_large_webp_is_unsupported_image():
    data = _webp(_photo(4800, 3200), quality=80)
    with pytest.raises(OSError):
        webp_scaled.reduced_webp(data[: len(data) // 2], factor=2)


def test_the_avif_limit_covers_a_12_megapixel_phone_photo_and_libavif_decodes_on_one_thread():
    assert settings.MAX_AVIF_PIXELS == 13_000_000
    assert 4032 * 3024 <= settings.MAX_AVIF_PIXELS
    assert AvifImagePlugin.DEFAULT_MAX_THREADS == 1


def test_an_avif_under_its_limit_is_accepted_as_jpeg(settings):
    settings.MAX_AVIF_PIXELS = 1_000_000
    validated = validate_image(_avif(1200, 800))
    assert (validated.format, validated.width, validated.height) == ("JPEG", 1200, 800)


def test_an_avif_over_its_limit_is_refused_from_the_header_naming_the_limit(settings):
    settings.MAX_AVIF_PIXELS = 1_000_000
    data = _avif(1250, 810)
    with translation.override("en"), pytest.raises(ImageTooLarge) as refused:
        validate_image(data)
    assert refused.value.code == "image_too_large" and refused.value.status == 413
    assert "AVIF" in refused.value.message and "at most 1 megapixels" in refused.value.message
    assert refused.value.detail == {"max_pixels": 1_000_000, "width": 1250, "height": 810, "format": "AVIF"}
    with translation.override("id"):
        with pytest.raises(ImageTooLarge) as refused_in_indonesian:
            validate_image(data)
    assert "paling banyak 1 megapiksel" in str(refused_in_indonesian.value.message)


@pytest.mark.django_db
def test_the_api_answers_413_image_too_large_for_an_avif_over_its_limit(api_client, user, style, funded, settings):
    settings.MAX_AVIF_PIXELS = 1_000_000
    before = snapshot(user)
    photo = SimpleUploadedFile("big.avif", _avif(1250, 810), content_type="image/avif")
    response = api_client.post("/api/generations", {"image": photo, "preset": STYLE_SLUG}, HTTP_ACCEPT_LANGUAGE="id")
    body = assert_error(response, 413, "image_too_large")
    assert "paling banyak 1 megapiksel" in body["message"]
    assert snapshot(user) == before


def test_freed_decode_memory_is_handed_back_to_the_os_where_glibc_runs_the_process():
    assert release_freed_memory() is (platform.libc_ver()[0] == "glibc")
