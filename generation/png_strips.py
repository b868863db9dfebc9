"""Decoding a large PNG a strip at a time, reduced as it goes.

A PNG cannot be decoded at a reduced scale the way a JPEG can (Image.draft), and
Pillow decodes the whole image at once: a 25-megapixel RGBA photo is 100 MB of pixels
before it can be scaled down, which is most of the memory an upload costs. Here the
compressed rows are inflated a strip of a few megabytes at a time, each strip is
decoded by Pillow's own PNG row decoder (it undoes the row filters) and box-reduced
at once, so the full-size image never exists.

Each strip is handed to Pillow as a little zlib stream of filtered rows, headed by
the previous strip's last row, already decoded, with filter "None": the first row of
a strip may be filtered against the row above it (Up, Average, Paeth), and so it
finds that row where it expects it.

Only the common kind is handled this way: 8-bit RGB or RGBA, not interlaced, without
a transparent colour (tRNS). Anything else (palette, greyscale, 16-bit) is smaller
per pixel or rare, and is decoded whole by the caller.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator

from PIL import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"
# PNG colour type -> (Pillow mode, bytes per pixel) for the kinds decoded in strips.
COLOUR_TYPES = {2: ("RGB", 3), 6: ("RGBA", 4)}
STRIP_BYTES = 4 * 1024 * 1024


def _chunks(data: bytes) -> Iterator[tuple[bytes, memoryview]]:
    view = memoryview(data)
    position = len(SIGNATURE)
    while position + 8 <= len(data):
        length, kind = struct.unpack(">I4s", view[position : position + 8])
        start = position + 8
        yield kind, view[start : start + length]
        position = start + length + 4  # skip the CRC


def reduced_png(data: bytes, *, factor: int, strip_bytes: int = STRIP_BYTES) -> Image.Image | None:
    """The PNG box-reduced by `factor` (as Image.reduce would, band by band when it has
    alpha), or None when it is not a kind decoded in strips.

    Raises OSError for a file whose rows are missing or do not inflate.
    """
    if not data.startswith(SIGNATURE):
        return None
    chunks = _chunks(data)
    kind, header = next(chunks, (b"", memoryview(b"")))
    if kind != b"IHDR" or len(header) != 13:
        return None
    width, height, depth, colour, _compression, _filter, interlace = struct.unpack(">IIBBBBB", header)
    if depth != 8 or colour not in COLOUR_TYPES or interlace != 0:
        return None
    mode, pixel_bytes = COLOUR_TYPES[colour]
    row_bytes = 1 + width * pixel_bytes  # each row starts with its filter type

    def compressed() -> Iterator[memoryview]:
        for kind, body in chunks:
            if kind == b"tRNS":
                raise _TransparentColour
            if kind == b"IDAT":
                yield body
            elif kind == b"IEND":
                return

    # A whole number of reduction boxes per strip, so reducing strip by strip gives
    # exactly what reducing the whole image gives.
    strip_rows = max(factor, strip_bytes // row_bytes // factor * factor)
    inflater = zlib.decompressobj()
    pending = compressed()
    out = Image.new(mode, ((width + factor - 1) // factor, (height + factor - 1) // factor))
    previous_row = b""
    try:
        for top in range(0, height, strip_rows):
            rows = min(strip_rows, height - top)
            filtered = _inflate(inflater, pending, rows * row_bytes)
            if previous_row:
                filtered = b"\x00" + previous_row + filtered
            decoded_rows = rows + (1 if previous_row else 0)
            strip = Image.frombytes(mode, (width, decoded_rows), zlib.compress(filtered, 0), "zip", mode)
            del filtered
            if previous_row:
                strip = strip.crop((0, 1, width, decoded_rows))
            previous_row = strip.crop((0, rows - 1, width, rows)).tobytes()
            out.paste(_reduce(strip, factor), (0, top // factor))
    except _TransparentColour:
        return None
    except zlib.error as exc:
        raise OSError(f"PNG rows do not inflate: {exc}") from exc
    return out


def exif(data: bytes) -> Image.Exif:
    """The file's EXIF (an eXIf chunk, before or after the pixels), read without decoding."""
    exif = Image.Exif()
    for kind, body in _chunks(data):
        if kind == b"eXIf":
            exif.load(b"Exif\x00\x00" + bytes(body))  # the prefix Pillow's PNG reader adds
            break
    return exif


class _TransparentColour(Exception):
    """A tRNS chunk: Pillow keeps it in `info`, so such a file is decoded whole."""


def _inflate(inflater: zlib._Decompress, pending: Iterator[memoryview], size: int) -> bytes:
    """The next `size` bytes of filtered rows, inflating only as much as that needs."""
    parts: list[bytes] = []
    wanted = size
    while wanted:
        source = None if inflater.eof else (inflater.unconsumed_tail or next(pending, None))
        if source is None:
            raise OSError("image file is truncated")
        part = inflater.decompress(source, wanted)
        parts.append(part)
        wanted -= len(part)
    return b"".join(parts)


def _reduce(strip: Image.Image, factor: int) -> Image.Image:
    if "A" in strip.mode:
        # As generation/images.py does for a whole image: band by band, because Pillow
        # reduces RGBA with premultiplied alpha, which would change the colours.
        return Image.merge(strip.mode, [strip.getchannel(index).reduce(factor) for index in range(len(strip.mode))])
    return strip.reduce(factor)
