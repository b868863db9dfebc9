"""Real images made on the fly for tests (no binary fixtures needed)."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw


def make_image_bytes(
    width: int = 640,
    height: int = 480,
    *,
    format: str = "JPEG",
    color: tuple[int, int, int] = (70, 130, 180),
    **save: object,
) -> bytes:
    image = Image.new("RGB", (width, height), color)
    draw = ImageDraw.Draw(image)
    draw.ellipse((width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=(240, 200, 80))
    buffer = io.BytesIO()
    image.save(buffer, format, **save)
    return buffer.getvalue()


def make_jpeg(width: int = 640, height: int = 480) -> bytes:
    return make_image_bytes(width, height, format="JPEG")


def make_png(width: int = 640, height: int = 480) -> bytes:
    return make_image_bytes(width, height, format="PNG")
