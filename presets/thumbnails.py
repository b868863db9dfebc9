"""Draw the seeded presets' thumbnails offline with Pillow.

    python -m presets.thumbnails          # writes static/img/presets/<slug>.png

One 256×256 PNG per seeded slug, plus `kind-<kind>.png` for presets staff add later
without uploading a thumbnail, so the picker never shows an empty box. Each kind has
its own palette and motif, and within a kind the hue shifts per slug. No text: the page
prints the style's name beside it in the visitor's language (an English caption drawn
into the picture sat above the Indonesian name). Images are palette PNGs of a few KB.

Needs no database and no Django setup: the slugs, names and kinds come from the seed
migration's own list.
"""

from __future__ import annotations

import colorsys
import hashlib
import importlib
import sys
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw

SIZE = 256
OUTPUT = Path(__file__).resolve().parent.parent / "static" / "img" / "presets"

# Base hue (0..1) and saturation per kind.
PALETTES = {
    "ghibli_reaction": (0.36, 0.45),  # meadow green and sky
    "emotion_mask": (0.92, 0.55),  # rose to crimson
    "neo_glitch": (0.80, 0.85),  # electric violet
    "preset": (0.08, 0.45),  # warm ochre
    "custom_prompt": (0.58, 0.35),  # slate blue
    "image_to_image": (0.50, 0.55),  # teal
}


def _rgb(hue: float, saturation: float, value: float) -> tuple[int, int, int]:
    red, green, blue = colorsys.hsv_to_rgb(hue % 1.0, saturation, value)
    return int(red * 255), int(green * 255), int(blue * 255)


def _shift(slug: str) -> float:
    # Stable per slug (not Python's salted hash()): the same file every run.
    return (hashlib.sha256(slug.encode()).digest()[0] / 255 - 0.5) * 0.3


def _gradient(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE))
    draw = ImageDraw.Draw(image)
    for y in range(SIZE):
        mix = y / (SIZE - 1)
        draw.line([(0, y), (SIZE, y)], fill=tuple(int(a + (b - a) * mix) for a, b in zip(top, bottom, strict=True)))
    return image


def _ghibli(draw: ImageDraw.ImageDraw, hue: float) -> None:
    draw.ellipse((168, 28, 224, 84), fill=(255, 236, 170))  # sun
    for x, y, r in ((40, 70, 22), (66, 60, 28), (96, 72, 20), (150, 110, 16), (172, 104, 22)):
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 255, 255))  # clouds
    draw.polygon(
        [(0, 200), (70, 140), (140, 190), (210, 130), (256, 170), (256, 256), (0, 256)], fill=_rgb(hue, 0.55, 0.55)
    )


def _mask(draw: ImageDraw.ImageDraw, hue: float) -> None:
    draw.ellipse((58, 36, 198, 196), fill=_rgb(hue, 0.25, 0.98), outline=_rgb(hue, 0.8, 0.45), width=5)
    for x in (92, 164):  # eye holes
        draw.ellipse((x - 18, 92, x + 18, 116), fill=_rgb(hue, 0.9, 0.25))


def _accent(draw: ImageDraw.ImageDraw, slug: str, hue: float) -> None:
    """What tells presets of one kind apart: the emotion on the mask, the Ghibli reaction."""
    ink = _rgb(hue, 0.9, 0.3)
    if "joy" in slug:
        draw.arc((98, 118, 158, 172), 20, 160, fill=ink, width=7)
    elif "sadness" in slug:
        draw.arc((100, 150, 156, 190), 200, 340, fill=ink, width=7)
        draw.polygon([(88, 122), (82, 140), (94, 140)], fill=(90, 150, 255))
        draw.ellipse((80, 134, 96, 150), fill=(90, 150, 255))
    elif "anger" in slug:
        draw.line((72, 76, 110, 90), fill=ink, width=8)
        draw.line((184, 76, 146, 90), fill=ink, width=8)
        draw.line((104, 162, 152, 162), fill=ink, width=8)
    elif "surprise" in slug:
        draw.ellipse((114, 140, 142, 176), outline=ink, width=7)
    elif "fear" in slug:
        points = [(100 + step * 8, 160 + (6 if step % 2 else -6)) for step in range(8)]
        draw.line(points, fill=ink, width=5)
    elif "tears" in slug:
        for x, y in ((60, 120), (90, 150), (190, 130), (220, 160)):
            draw.polygon([(x, y - 16), (x - 9, y), (x + 9, y)], fill=(80, 150, 255))
            draw.ellipse((x - 9, y - 8, x + 9, y + 10), fill=(80, 150, 255))
    elif "shock" in slug:
        for x in (46, 80, 176, 210):
            draw.line([(x, 112), (x + 10, 130), (x - 6, 146), (x + 6, 166)], fill=(255, 255, 255), width=5)
        draw.rectangle((124, 110, 134, 150), fill=(255, 80, 80))
        draw.ellipse((123, 156, 135, 168), fill=(255, 80, 80))
    elif slug == "oil_painting":
        for index in range(5):
            draw.line((64 + index * 28, 176, 96 + index * 28, 120), fill=_rgb(hue + index * 0.05, 0.8, 0.7), width=12)
    elif slug == "watercolor":
        for x, y, r, shift in ((96, 110, 34, 0.0), (150, 124, 30, 0.3), (122, 150, 26, 0.6)):
            draw.ellipse((x - r, y - r, x + r, y + r), fill=_rgb(hue + shift, 0.35, 0.95))
    elif slug == "pencil_sketch":
        draw.rectangle((52, 38, 204, 178), fill=(245, 245, 240))
        for x in range(60, 200, 12):
            draw.line((x, 170, x + 40, 60), fill=(90, 90, 90), width=2)
    elif slug == "vintage_film":
        draw.rectangle((20, 20, 236, 196), outline=(40, 30, 20), width=14)
        for x in range(30, 236, 26):
            draw.rectangle((x, 16, x + 12, 24), fill=(250, 240, 220))
            draw.rectangle((x, 192, x + 12, 200), fill=(250, 240, 220))
    elif slug == "realistic":
        draw.ellipse((88, 68, 168, 148), fill=(30, 30, 40), outline=(200, 200, 210), width=8)
        draw.ellipse((112, 92, 144, 124), fill=(70, 110, 170))
        draw.ellipse((118, 96, 128, 106), fill=(255, 255, 255))
    elif slug == "high_quality":
        draw.polygon([(128, 60), (176, 108), (128, 170), (80, 108)], fill=(120, 220, 255), outline=(255, 255, 255))
        draw.line((80, 108, 176, 108), fill=(255, 255, 255), width=3)
    elif slug == "cartoon_3d":
        draw.ellipse((78, 60, 178, 160), fill=_rgb(hue + 0.5, 0.6, 0.9))
        draw.ellipse((100, 76, 130, 100), fill=(255, 255, 255))
    elif "cyberpunk" in slug:
        for x in range(10, 256, 22):
            draw.line((x, 0, x - 14, 200), fill=(180, 220, 255), width=2)
    elif "datamosh" in slug:
        for index in range(10):
            x, y = (index * 53) % 200, (index * 31) % 170
            draw.rectangle((x, y, x + 28, y + 28), fill=_rgb(hue + index * 0.1, 1.0, 1.0))
    elif "vaporwave" in slug:
        draw.pieslice((68, 40, 188, 160), 180, 360, fill=(255, 190, 90))
        for y in (70, 84, 96):
            draw.line((68, y, 188, y), fill=(255, 120, 200), width=4)
        for x in range(0, 256, 32):
            draw.line((128, 110, x, 204), fill=(120, 255, 255), width=2)
    elif "hologram" in slug:
        draw.ellipse((104, 50, 152, 98), fill=(120, 240, 255))
        draw.pieslice((80, 100, 176, 200), 180, 360, fill=(120, 240, 255))
        for y in range(50, 200, 8):
            draw.line((70, y, 186, y), fill=(20, 60, 120), width=2)
    elif "sparkle" in slug:
        for x, y, r in ((52, 130, 14), (128, 118, 18), (204, 142, 12), (96, 166, 9)):
            draw.polygon([(x, y - r), (x + r // 4, y), (x, y + r), (x - r // 4, y)], fill=(255, 250, 190))
            draw.polygon([(x - r, y), (x, y - r // 4), (x + r, y), (x, y + r // 4)], fill=(255, 250, 190))


def _glitch(draw: ImageDraw.ImageDraw, hue: float) -> None:
    for index, (y, height) in enumerate(((30, 14), (62, 8), (88, 22), (126, 6), (146, 18), (178, 10))):
        offset = (index * 37) % 60 - 30
        draw.rectangle((20 + offset, y, 236 + offset, y + height), fill=_rgb(hue + index * 0.07, 0.9, 1.0))
    draw.rectangle((70, 60, 186, 176), outline=(0, 255, 240), width=4)
    draw.rectangle((76, 66, 192, 182), outline=(255, 0, 170), width=4)


def _frame(draw: ImageDraw.ImageDraw, hue: float) -> None:
    draw.rectangle((44, 30, 212, 186), fill=_rgb(hue, 0.15, 0.98), outline=_rgb(hue, 0.7, 0.35), width=8)
    draw.polygon([(60, 170), (110, 100), (150, 150), (175, 125), (196, 170)], fill=_rgb(hue, 0.6, 0.6))
    draw.ellipse((160, 50, 188, 78), fill=_rgb(hue + 0.08, 0.7, 0.95))


def _prompt(draw: ImageDraw.ImageDraw, hue: float) -> None:
    draw.rounded_rectangle((30, 60, 226, 150), radius=18, fill=(255, 255, 255), outline=_rgb(hue, 0.6, 0.4), width=4)
    for index, width in enumerate((150, 110)):
        draw.rectangle((50, 80 + index * 26, 50 + width, 92 + index * 26), fill=_rgb(hue, 0.35, 0.7))
    draw.rectangle((168, 104, 172, 128), fill=_rgb(hue, 0.9, 0.3))  # caret


def _studio(draw: ImageDraw.ImageDraw, hue: float) -> None:
    draw.rectangle((34, 44, 134, 144), fill=_rgb(hue, 0.2, 0.95), outline=(255, 255, 255), width=4)
    draw.rectangle((122, 84, 222, 184), fill=_rgb(hue, 0.7, 0.75), outline=(255, 255, 255), width=4)
    draw.polygon([(110, 100), (140, 114), (110, 128)], fill=(255, 255, 255))  # arrow


MOTIFS: dict[str, Callable[[ImageDraw.ImageDraw, float], None]] = {
    "ghibli_reaction": _ghibli,
    "emotion_mask": _mask,
    "neo_glitch": _glitch,
    "preset": _frame,
    "custom_prompt": _prompt,
    "image_to_image": _studio,
}


def render(*, slug: str, kind: str) -> Image.Image:
    """The thumbnail for one preset, as a palette image."""
    base_hue, saturation = PALETTES.get(kind, PALETTES["preset"])
    hue = base_hue + _shift(slug)
    image = _gradient(_rgb(hue - 0.04, saturation * 0.6, 0.98), _rgb(hue + 0.04, saturation, 0.62))
    draw = ImageDraw.Draw(image)
    MOTIFS.get(kind, _frame)(draw, hue)
    _accent(draw, slug, hue)
    return image.quantize(colors=96, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def seeded_presets() -> list[dict[str, object]]:
    seed = importlib.import_module("presets.migrations.0002_seed_presets")
    return list(seed.PRESETS)


def write_all(output: Path = OUTPUT) -> list[Path]:
    """Write every seeded preset's thumbnail and one fallback per kind; return the paths."""
    output.mkdir(parents=True, exist_ok=True)
    jobs = [(str(p["slug"]), str(p["kind"])) for p in seeded_presets()]
    jobs += [(f"kind-{kind}", kind) for kind in PALETTES]
    paths = []
    for slug, kind in jobs:
        path = output / f"{slug}.png"
        render(slug=slug, kind=kind).save(path, "PNG", optimize=True)
        paths.append(path)
    return paths


def main() -> int:
    paths = write_all()
    total = sum(path.stat().st_size for path in paths)
    print(f"wrote {len(paths)} thumbnails to {OUTPUT} ({total // 1024} KB in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
