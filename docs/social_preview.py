"""Draw static/img/social-preview.png: the picture a shared link to Stefna's home page or
feed unfurls with (og:image, 1200×630, the size Facebook, X, Slack and WhatsApp's large
card expect).

The PNG is committed; nothing draws it at run time. Run `make social-preview` after
changing the brand (the colours and the mark come from static/css/stefna.css and
static/img/favicon.svg) and commit the result. It stays well under WhatsApp's ~300 KB
limit for preview images.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 1200, 630
OUT = Path(__file__).resolve().parent.parent / "static" / "img" / "social-preview.png"

# static/css/stefna.css: --bg-tint, --ink, --muted, --primary; the mark's gradient (favicon.svg).
BACKGROUND = (239, 234, 249)
INK = (27, 23, 38)
MUTED = (93, 88, 106)
PRIMARY = (91, 63, 209)
MARK_FROM = (123, 92, 240)
MARK_TO = (240, 106, 74)

# The site's font is the visitor's system sans-serif; a bold sans from Debian's fonts
# stands in, else Pillow's own.
FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
)
REGULAR_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
)


def _font(paths: tuple[str, ...], size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    for path in paths:
        if Path(path).exists():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)


def _gradient(size: int) -> Image.Image:
    """The brand mark's diagonal gradient, as in favicon.svg."""
    square = Image.new("RGB", (size, size))
    pixels = square.load()
    assert pixels is not None
    for y in range(size):
        for x in range(size):
            t = (x + y) / (2 * (size - 1))
            pixels[x, y] = tuple(round(a + (b - a) * t) for a, b in zip(MARK_FROM, MARK_TO, strict=True))
    return square


def _mark(size: int) -> Image.Image:
    """favicon.svg at `size` px: a rounded square with the white brush stroke."""
    scale = size / 32
    mark = _gradient(size).convert("RGBA")
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, size - 1, size - 1), radius=round(9 * scale), fill=255)
    mark.putalpha(mask)
    # The stroke "M9 21c3-7 8-10 14-11-4 3-6 7-7 12" (two cubic curves), drawn as round
    # dabs close together: a round-capped line of width 3.
    draw = ImageDraw.Draw(mark)
    points = _bezier((9, 21), (12, 14), (17, 11), (23, 10)) + _bezier((23, 10), (19, 13), (17, 17), (16, 22))
    radius = 1.5 * scale
    for x, y in points:
        draw.ellipse((x * scale - radius, y * scale - radius, x * scale + radius, y * scale + radius), fill="white")
    return mark


def _bezier(*points: tuple[float, float], steps: int = 400) -> list[tuple[float, float]]:
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = points
    curve = []
    for step in range(steps + 1):
        t = step / steps
        a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3
        curve.append((a * x0 + b * x1 + c * x2 + d * x3, a * y0 + b * y1 + c * y2 + d * y3))
    return curve


def draw() -> Image.Image:
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    # A band of the mark's gradient along the bottom edge.
    band = _gradient(WIDTH).resize((WIDTH, 14))
    image.paste(band, (0, HEIGHT - 14))
    # Drawn four times larger and scaled down: Pillow draws lines without anti-aliasing.
    mark = _mark(168 * 4).resize((168, 168), Image.Resampling.LANCZOS)
    image.paste(mark, (110, 150), mark)
    draw.text((310, 160), "Stefna", font=_font(FONTS, 132), fill=INK)
    # English and Bahasa Indonesia: the picture is one for every visitor.
    draw.text((114, 380), "Turn a photo into art, in seconds.", font=_font(FONTS, 50), fill=PRIMARY)
    draw.text(
        (114, 455), "Ubah fotomu jadi karya seni dalam hitungan detik.", font=_font(REGULAR_FONTS, 38), fill=MUTED
    )
    return image


def main() -> int:
    image = draw()
    # A palette of 128 colours keeps the flat art sharp and the file small.
    image.quantize(colors=128, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(OUT, optimize=True)
    print(f"{OUT.relative_to(Path.cwd()) if OUT.is_relative_to(Path.cwd()) else OUT}: {OUT.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
