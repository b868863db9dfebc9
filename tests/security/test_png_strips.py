"""Big PNGs are decoded a strip at a time and reduced as they go (generation/png_strips.py),
which must give exactly what decoding the whole image and reducing it gives."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from generation.exceptions import UnsupportedImage
from generation.images import validate_image
from generation.png_strips import exif, reduced_png


def _photo_like(mode: str, size: tuple[int, int]) -> Image.Image:
    """Noise and gradients, so the encoder uses every row filter (Sub, Up, Average, Paeth)."""
    noise = Image.effect_noise(size, 40)
    gradient = Image.linear_gradient("L").resize(size)
    bands = [noise, gradient, noise.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gradient.rotate(90)]
    return Image.merge(mode, bands[: len(mode)])


def _png(image: Image.Image, **save: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", **save)
    return buffer.getvalue()


def _whole_then_reduced(data: bytes, factor: int) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    if "A" in image.mode:
        return Image.merge(image.mode, [image.getchannel(i).reduce(factor) for i in range(len(image.mode))])
    return image.reduce(factor)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])
@pytest.mark.parametrize("factor", [2, 3])
def test_a_png_reduced_strip_by_strip_equals_the_whole_image_reduced(mode, factor):
    data = _png(_photo_like(mode, (301, 257)))  # odd sizes: the last box is partial
    strips = reduced_png(data, factor=factor, strip_bytes=20_000)  # many strips of 12-18 rows
    expected = _whole_then_reduced(data, factor)
    assert strips is not None
    assert strips.mode == expected.mode and strips.size == expected.size
    assert strips.tobytes() == expected.tobytes()


@pytest.mark.parametrize(
    "image, save",
    [
        (Image.new("P", (64, 64)), {}),  # palette
        (Image.new("L", (64, 64)), {}),  # greyscale
        (Image.new("I;16", (64, 64)), {}),  # 16-bit
        (Image.new("RGB", (64, 64)), {"transparency": (0, 0, 0)}),  # a tRNS colour
    ],
)
def test_other_kinds_of_png_are_left_to_the_whole_decode(image, save):
    assert reduced_png(_png(image, **save), factor=2) is None


def test_an_interlaced_png_is_left_to_the_whole_decode():
    data = bytearray(_png(Image.new("RGB", (64, 64))))
    header_at = 8 + 8  # signature, then the IHDR chunk's length and type
    data[header_at + 12] = 1  # Adam7 (Pillow writes no interlaced PNGs; its header is enough)
    data[header_at + 13 : header_at + 17] = struct.pack(">I", zlib.crc32(bytes(data[header_at - 4 : header_at + 13])))
    assert Image.open(io.BytesIO(bytes(data))).info.get("interlace") == 1
    assert reduced_png(bytes(data), factor=2) is None


def test_a_png_whose_rows_are_cut_short_is_refused_as_damaged(settings):
    settings.MAX_SOURCE_SIDE = 64
    data = _png(_photo_like("RGB", (400, 300)))
    cut = data[: len(data) // 2] + data[-12:]  # the IEND chunk stays: only rows are missing
    with pytest.raises(OSError):
        reduced_png(cut, factor=4, strip_bytes=20_000)
    with pytest.raises(UnsupportedImage) as refused:
        validate_image(cut)
    assert "damaged" in str(refused.value.message)


def test_a_big_png_is_turned_upright_by_its_exif_and_stored_without_it(settings):
    settings.MAX_SOURCE_SIDE = 100
    tags = Image.Exif()
    tags[0x0112] = 6  # "rotate 90°"
    tags[0x8825] = {2: (1.0, 2.0, 3.0)}  # GPS, which must not survive
    data = _png(_photo_like("RGBA", (400, 300)), exif=tags.tobytes())
    assert exif(data).get(0x0112) == 6
    validated = validate_image(data)
    assert (validated.width, validated.height) == (75, 100)  # portrait, at most 100 px
    stored = Image.open(io.BytesIO(validated.content))
    assert stored.mode == "RGBA"
    assert not stored.getexif()
