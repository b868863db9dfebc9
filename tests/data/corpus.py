"""The hostile-input corpus: uploads and prompts that try to break, trick or overload us.

Every sample is generated here from a few lines of code (no binary fixtures in git);
`python -m tests.data.make_corpus DIR` writes them all to DIR for manual poking
(curl, the browser). Each sample carries the answer the contract promises for it:
either "accepted" or an HTTP status plus error code, per transport where they differ
(an empty base64 string is a schema error, an empty file is an unreadable image).
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

from PIL import ExifTags, Image, ImageDraw

ACCEPTED = "accepted"


@dataclass(frozen=True)
class Sample:
    name: str  # the file name the client claims
    content_type: str  # the type the client claims
    make: Callable[[], bytes]
    # What the API answers: ACCEPTED, or (status, code).
    expect: str | tuple[int, str]
    # For JSON base64 uploads when it differs (None: same as `expect`).
    expect_json: str | tuple[int, str] | None = None
    why: str = ""

    @property
    def expected_json(self) -> str | tuple[int, str]:
        return self.expect if self.expect_json is None else self.expect_json


# --- Building blocks -----------------------------------------------------------------------


def _photo(width: int = 320, height: int = 240, mode: str = "RGB") -> Image.Image:
    image = Image.new("RGB", (width, height), (70, 130, 180))
    ImageDraw.Draw(image).ellipse((width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=(240, 200, 80))
    return image.convert(mode) if mode != "RGB" else image


def _save(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


# --- Samples -------------------------------------------------------------------------------


def zero_bytes() -> bytes:
    return b""


def text_named_jpg() -> bytes:
    return b"Dear Stefna,\nthis is not a photo. It is a letter.\n" * 20


def truncated_jpeg() -> bytes:
    data = _save(_photo(640, 480), "JPEG", quality=95)
    return data[: len(data) // 2]


def png_decompression_bomb() -> bytes:
    """A ~200-byte PNG whose header declares 100,000 × 100,000 pixels (10 gigapixels).

    Decoding it would need 10 GB; a careful reader refuses it from the header alone.
    """
    width = height = 100_000
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    # A few rows of real, highly compressible data: what a bomb looks like on the wire.
    rows = zlib.compress(b"\x00" * (1 + width // 8) * 8, 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", rows) + _png_chunk(b"IEND", b"")


def svg_with_script() -> bytes:
    return (
        b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100">'
        b'<script>alert("svg")</script><circle cx="50" cy="50" r="40" fill="red"/></svg>'
    )


def animated_gif() -> bytes:
    frames = [_photo(64, 64).convert("P"), Image.new("P", (64, 64), 3)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def animated_png() -> bytes:
    frames = [_photo(64, 64), Image.new("RGB", (64, 64), (200, 10, 10))]
    return _save(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100)


def animated_webp() -> bytes:
    frames = [_photo(64, 64), Image.new("RGB", (64, 64), (200, 10, 10))]
    return _save(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100)


def cmyk_jpeg() -> bytes:
    return _save(_photo(320, 240, mode="CMYK"), "JPEG", quality=90)


def png_16_bit() -> bytes:
    """16-bit greyscale, mid-grey (32768): must come out mid-grey, not saturated white."""
    image = Image.new("I;16", (200, 100), 0x8000)
    return _save(image, "PNG")


# Orientation 6 = "rotate 90° clockwise to display". The sensor image is 60 wide × 30 high,
# red on its left half and blue on its right, so displayed upright it is 30 × 60, red on top.
EXIF_SENSOR_SIZE = (60, 30)
EXIF_DISPLAY_SIZE = (30, 60)
GPS_LATITUDE = (51.0, 30.0, 0.0)


def exif_rotated_with_gps() -> bytes:
    image = Image.new("RGB", EXIF_SENSOR_SIZE, (0, 0, 255))
    ImageDraw.Draw(image).rectangle((0, 0, EXIF_SENSOR_SIZE[0] // 2 - 1, EXIF_SENSOR_SIZE[1]), fill=(255, 0, 0))
    exif = image.getexif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.Make] = "StefnaTestCam"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = GPS_LATITUDE
    gps[ExifTags.GPS.GPSLongitudeRef] = "W"
    gps[ExifTags.GPS.GPSLongitude] = (0.0, 7.0, 0.0)
    return _save(image, "JPEG", quality=95, exif=exif)


def jpeg_header_20000_square() -> bytes:
    """A small, valid JPEG whose frame header (SOF0) is rewritten to claim 20,000 × 20,000."""
    data = bytearray(_save(_photo(64, 64), "JPEG"))
    sof = data.find(b"\xff\xc0")
    assert sof > 0, "Pillow writes baseline JPEGs (SOF0)"
    # FF C0, length (2), precision (1), height (2), width (2)
    struct.pack_into(">HH", data, sof + 5, 20_000, 20_000)
    return bytes(data)


# A payload hidden in an accepted photo: a JPEG comment and trailing HTML. Re-encoding
# must drop both, so the stored file never carries them.
POLYGLOT_MARKER = b"<script>alert('polyglot')</script>"


def jpeg_with_html_payload() -> bytes:
    return _save(_photo(64, 64), "JPEG", comment=POLYGLOT_MARKER) + b"<html>" + POLYGLOT_MARKER + b"</html>"


def bmp_image() -> bytes:
    return _save(_photo(64, 64), "BMP")


def pdf_named_png() -> bytes:
    return b"%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"


UNSUPPORTED = (415, "unsupported_image")
TOO_MANY_PIXELS = (413, "image_too_large")  # CONTRACT: too many pixels is image_too_large

IMAGES: list[Sample] = [
    Sample("empty.jpg", "image/jpeg", zero_bytes, UNSUPPORTED, (422, "invalid_input"), "zero-byte file"),
    Sample("letter.jpg", "image/jpeg", text_named_jpg, UNSUPPORTED, why="a text file named .jpg"),
    Sample("half.jpg", "image/jpeg", truncated_jpeg, UNSUPPORTED, why="a JPEG cut in half"),
    Sample("bomb.png", "image/png", png_decompression_bomb, TOO_MANY_PIXELS, why="10-gigapixel PNG header"),
    Sample("drawing.svg", "image/svg+xml", svg_with_script, UNSUPPORTED, why="SVG (with a script)"),
    Sample("dance.gif", "image/gif", animated_gif, UNSUPPORTED, why="animated GIF"),
    Sample("dance.png", "image/png", animated_png, UNSUPPORTED, why="animated PNG (APNG)"),
    Sample("dance.webp", "image/webp", animated_webp, UNSUPPORTED, why="animated WebP"),
    Sample("print.jpg", "image/jpeg", cmyk_jpeg, ACCEPTED, why="CMYK JPEG: converted to RGB"),
    Sample("scan.png", "image/png", png_16_bit, ACCEPTED, why="16-bit PNG: scaled to 8 bits"),
    Sample("phone.jpg", "image/jpeg", exif_rotated_with_gps, ACCEPTED, why="EXIF-rotated photo with GPS"),
    Sample("huge.jpg", "image/jpeg", jpeg_header_20000_square, TOO_MANY_PIXELS, why="20,000 × 20,000 header"),
    Sample("polyglot.jpg", "image/jpeg", jpeg_with_html_payload, ACCEPTED, why="JPEG carrying HTML"),
    Sample("old.bmp", "image/bmp", bmp_image, UNSUPPORTED, why="BMP"),
    Sample("doc.png", "image/png", pdf_named_png, UNSUPPORTED, why="a PDF named .png"),
]


# --- Prompts -------------------------------------------------------------------------------

SCRIPT_PROMPT = '<script>alert("stefna")</script><img src=x onerror=alert(1)>'


@dataclass(frozen=True)
class PromptSample:
    name: str
    prompt: str
    expect: str | tuple[int, str]


PROMPTS: list[PromptSample] = [
    PromptSample("emoji", "🎨 a cat 🐈‍⬛ wearing a crown 👑, family 👨‍👩‍👧‍👦", ACCEPTED),
    PromptSample("rtl", "قطة ترتدي تاجاً \u202egnp.exe\u202c שלום עולם", ACCEPTED),
    PromptSample("ten-thousand-characters", "paint " * 1666 + "sky!", (422, "invalid_input")),
    PromptSample("nul-byte", "a cat\x00 and a dog", (422, "invalid_input")),
    PromptSample("script", SCRIPT_PROMPT, ACCEPTED),
    PromptSample("template-braces", "{prompt} {0} {user.email} %(secret)s", ACCEPTED),
]

# --- Bodies that are not what they claim ----------------------------------------------------

MALFORMED_JSON_BODIES: list[tuple[str, bytes]] = [
    ("truncated object", b'{"preset": "oil", "image_base64": "abc'),
    ("not an object", b'["preset", "oil"]'),
    ("a bare string", b'"hello"'),
    ("invalid utf-8", b'{"preset": "\xff\xfe"}'),
    ("trailing garbage", b'{"preset": "oil"} trailing'),
    ("nested too deep", b"[" * 100_000 + b"]" * 100_000),
    ("empty body", b""),
]

MALFORMED_BASE64: list[tuple[str, str]] = [
    ("not base64 at all", "this is not base64 !!!"),
    ("wrong padding", "abc"),
    ("data URI without base64 marker", "data:image/jpeg,/9j/4AAQ"),
    ("data URI with junk", "data:image/jpeg;base64,@@@@"),
    ("whitespace only", "   "),
    ("valid base64 of text", "aGVsbG8gd29ybGQ="),
]
