"""Offline preview looks: one per preset, shaped by the prompt's own words.

The offline provider has no model, so it must not pretend to be one; but a preview
where every style looks alike (or like the photo) teaches nothing about the styles.
Here the rendered prompt picks the effect (its style words: "tears", "datamosh",
"pencil sketch"…), its colour and mood words pick the palette ("indigo", "neon",
"golden"…), and its scene words add motifs ("rain", "stars", "sparks"…). The variant
number changes the seed, so image-to-image takes differ like a model's would.
Pure Pillow, deterministic for a given photo, prompt and variant.
"""

from __future__ import annotations

import colorsys
import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter, ImageOps

RGB = tuple[int, int, int]

# Colour and mood words, in the order a prompt might use them.
PALETTE_WORDS: dict[str, RGB] = {
    "indigo": (52, 44, 140),
    "slate blue": (90, 105, 170),
    "silver": (200, 205, 220),
    "crimson": (190, 20, 50),
    "ember": (255, 110, 30),
    "black": (18, 14, 20),
    "sunflower": (255, 200, 30),
    "gold": (235, 180, 60),
    "golden": (245, 185, 80),
    "orange": (250, 140, 40),
    "violet": (140, 60, 220),
    "teal": (20, 170, 160),
    "magenta": (230, 30, 170),
    "cyan": (20, 220, 240),
    "neon": (255, 40, 200),
    "pastel": (250, 190, 220),
    "pink": (255, 120, 190),
    "chalk": (235, 232, 225),
    "candle": (255, 170, 70),
    "green": (60, 160, 80),
    "meadow": (110, 180, 80),
    "blue": (50, 110, 220),
    "red": (210, 40, 40),
    "purple": (120, 50, 170),
    "sepia": (160, 120, 80),
    "sunset": (250, 120, 70),
    "night": (20, 24, 60),
    "forest": (40, 110, 60),
    "ocean": (20, 100, 170),
    "snow": (235, 240, 250),
    "rain": (90, 110, 140),
}


@dataclass(frozen=True)
class Recipe:
    name: str
    words: tuple[str, ...]
    effect: Callable[[Image.Image, list[RGB], random.Random], Image.Image]


def _palette(prompt: str, rng: random.Random) -> list[RGB]:
    text = prompt.lower()
    found = sorted((text.find(word), colour) for word, colour in PALETTE_WORDS.items() if word in text)
    colours = [colour for _, colour in found][:3]
    while len(colours) < 2:  # no colour words: colours from the prompt itself
        hue = rng.random()
        colours.append(tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.65, 0.9)))  # type: ignore[arg-type]
    return colours


def _shift_hue(colour: RGB, amount: float) -> RGB:
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in colour))
    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb((h + amount) % 1, s, v))  # type: ignore[return-value]


def _duotone(image: Image.Image, dark: RGB, light: RGB, mid: RGB | None = None) -> Image.Image:
    grey = ImageOps.autocontrast(ImageOps.grayscale(image))
    if mid is None:
        return ImageOps.colorize(grey, black=dark, white=light)
    return ImageOps.colorize(grey, black=dark, white=light, mid=mid)


def _cel(image: Image.Image, palette: list[RGB], rng: random.Random) -> Image.Image:
    small = image.resize((max(1, image.width // 4), max(1, image.height // 4)), Image.Resampling.BILINEAR)
    image = small.filter(ImageFilter.ModeFilter(3)).resize(image.size, Image.Resampling.BICUBIC)
    image = ImageOps.posterize(image.filter(ImageFilter.SMOOTH_MORE), 4)
    edges = ImageOps.invert(
        ImageOps.grayscale(image).filter(ImageFilter.FIND_EDGES).point(lambda v: 255 if v > 40 else 0)
    )
    image = ImageEnhance.Color(image).enhance(1.4)
    image = Image.blend(image, Image.new("RGB", image.size, palette[0]), 0.22)
    return ImageChops.multiply(image, edges.convert("RGB"))


def _tears(image: Image.Image, palette: list[RGB], rng: random.Random) -> Image.Image:
    image = _cel(image, [(90, 140, 230), *palette], rng)
    draw = ImageDraw.Draw(image, "RGBA")
    for _ in range(40):  # falling drops
        x, y = rng.randrange(image.width), rng.randrange(image.height)
        draw.line([(x, y), (x - 3, y + image.height // 14)], fill=(200, 230, 255, 170), width=3)
    return image


def _sparkle(image: Image.Image, palette: list[RGB], rng: random.Random) -> Image.Image:
    image = _cel(image, [(255, 200, 90), *palette], rng)
    glow = Image.radial_gradient("L").resize(image.size).point(lambda v: 255 - v)
    image = Image.composite(Image.new("RGB", image.size, (255, 230, 150)), image, glow.point(lambda v: v // 3))
    _stars(image, rng, count=45, colour=(255, 250, 200))
    return image


def _shock(image: Image.Image, palette: list[RGB], rng: random.Random) -> Image.Image:
    image = _cel(image, [(70, 120, 230), *palette], rng)
    draw = ImageDraw.Draw(image, "RGBA")
    cx, cy = image.width // 2, image.height // 3
    for n in range(48):  # speed lines bursting from the face
        angle = n / 48 * 6.283 + rng.random() * 0.05
        inner, outer = image.width * 0.3, image.width * 1.2
        draw.line(
            [
                (cx + inner * math.cos(angle), cy + inner * math.sin(angle)),
                (cx + outer * math.cos(angle), cy + outer * math.sin(angle)),
            ],
            fill=(255, 255, 255, 150),
            width=2,
        )
    return image


def _mask(image: Image.Image, palette: list[RGB], rng: random.Random) -> Image.Image:
    dark = tuple(c // 5 for c in palette[0])
    image = _duotone(image, dark, palette[1] if len(palette) > 1 else (255, 230, 200), palette[0])  # type: ignore[arg-type]
    draw = ImageDraw.Draw(image, "RGBA")
    top = image.height * 3 // 10
    draw.ellipse(
        (image.width // 8, top, image.width * 7 // 8, top + image.height // 6),
        fill=(*palette[0], 140),
        outline=(*(palette[-1]), 230),
        width=max(3, image.width // 120),
    )
    vignette = Image.radial_gradient("L").resize(image.size)
    return Image.composite(Image.new("RGB", image.size, (0, 0, 0)), image, vignette.point(lambda v: int(v * 0.85)))


def _cyberpunk(image: Image.Image, palette: list[RGB], rng: random.Random) -> Image.Image:
    image = _duotone(ImageEnhance.Contrast(image).enhance(1.5), (10, 0, 40), (20, 230, 255), (230, 30, 170))
    red, green, blue = image.split()
    shift = max(4, image.width // 50)
    red = ImageChops.offset(red, shift, 0)
    image = Image.merge("RGB", (red, green, blue))
    draw = ImageDraw.Draw(image, "RGBA")
    for y in range(0, image.height, 4):
        draw.line([(0, y), (image.width, y)], fill=(0, 0, 0, 90))
    return image


def _datamosh(image: Image.Image, palette: list[RGB], rng: random.Random) -> Image.Image:
    image = ImageEnhance.Color(image).enhance(2.2)
    block = max(8, image.width // 24)
    for _ in range(70):  # smeared macroblocks: a block dragged sideways and stretched
        x, y = rng.randrange(0, image.width - block), rng.randrange(0, image.height - block)
        tile = image.crop((x, y, x + block, y + block)).resize((block * rng.randint(2, 6), block))
        image.paste(tile, (max(0, x - block), y))
    for _ in range(12):  # pixel-sorting streaks: one row stretched down a column band
        x = rng.randrange(image.width - 4)
        top = rng.randrange(image.height // 2)
        strip = image.crop((x, top, x + rng.randint(4, 30), top + 1)).resize((rng.randint(4, 30), image.height - top))
        image.paste(strip, (x, top))
    return ImageOps.posterize(image, 3)


def _vaporwave(image: Image.Image, palette: list[RGB], rng: random.Random) -> Image.Image:
    image = _duotone(image, (60, 20, 110), (255, 200, 235), (70, 210, 230))
    draw = ImageDraw.Draw(image, "RGBA")
    horizon = image.height * 2 // 3
    for n in range(0, image.width + 1, max(20, image.width // 16)):  # the grid floor
        draw.line([(image.width // 2, horizon), (n * 3 - image.width, image.height)], fill=(255, 90, 220, 160), width=2)
    for n in range(8):
        y = horizon + (image.height - horizon) * (n / 8) ** 2
        draw.line([(0, y), (image.width, y)], fill=(255, 90, 220, 160), width=2)
    radius = image.width // 6
    draw.ellipse(
        (image.width // 2 - radius, horizon - 2 * radius, image.width // 2 + radius, horizon), fill=(255, 160, 80, 150)
    )
    return image


def _hologram(image: Image.Image, palette: list[RGB], rng: random.Random) -> Image.Image:
    image = _duotone(image, (0, 20, 40), (160, 255, 250))
    ghost = ImageChops.offset(image, image.width // 40, 0)
    image = Image.blend(image, ghost, 0.4).filter(ImageFilter.GaussianBlur(0.6))
    draw = ImageDraw.Draw(image, "RGBA")
    for y in range(0, image.height, 6):
        draw.line([(0, y), (image.width, y)], fill=(0, 255, 240, 50), width=2)
    return image


def _watercolor(image: Image.Image, palette: list[RGB], rng: random.Random) -> Image.Image:
    soft = image.filter(ImageFilter.ModeFilter(7)).filter(ImageFilter.GaussianBlur(2.5))
    soft = ImageEnhance.Color(ImageOps.posterize(soft, 5)).enhance(0.9)
    paper = Image.effect_noise(image.size, 18).convert("RGB")
    washed = Image.blend(soft, Image.new("RGB", image.size, (250, 246, 236)), 0.3)
    return ImageChops.multiply(washed, ImageOps.autocontrast(paper, cutoff=40).point(lambda v: 215 + v // 6))


def _oil(image: Image.Image, palette: list[RGB], rng: random.Random) -> Image.Image:
    image = image.filter(ImageFilter.ModeFilter(9)).filter(ImageFilter.EDGE_ENHANCE_MORE)
    image = ImageEnhance.Color(ImageOps.posterize(image, 4)).enhance(1.5)
    return Image.blend(image, Image.new("RGB", image.size, (120, 80, 40)), 0.12)


def _sketch(image: Image.Image, palette: list[RGB], rng: random.Random) -> Image.Image:
    grey = ImageOps.grayscale(image)
    edges = ImageOps.invert(grey.filter(ImageFilter.FIND_EDGES))
    edges = ImageOps.autocontrast(edges.filter(ImageFilter.SMOOTH)).point(lambda v: 0 if v < 200 else 255)
    shade = ImageOps.posterize(grey, 2).point(lambda v: 200 + v // 5)
    return ImageChops.multiply(edges.convert("RGB"), shade.convert("RGB"))


def _raw_photo(image: Image.Image, palette: list[RGB], rng: random.Random) -> Image.Image:
    # Realistic: shallow depth of field (sharp centre, blurred surround) in warm window light.
    blurred = image.filter(ImageFilter.GaussianBlur(max(2, image.width // 60)))
    focus = Image.radial_gradient("L").resize(image.size)
    image = Image.composite(blurred, image.filter(ImageFilter.SHARPEN), focus)
    return Image.blend(ImageEnhance.Contrast(image).enhance(1.1), Image.new("RGB", image.size, (255, 190, 130)), 0.25)


def _vintage(image: Image.Image, palette: list[RGB], rng: random.Random) -> Image.Image:
    image = _duotone(image, (40, 25, 15), (250, 225, 180), (160, 120, 80))
    grain = Image.effect_noise(image.size, 60).convert("RGB")
    image = Image.blend(image, grain, 0.18)
    leak = Image.linear_gradient("L").rotate(-90).resize(image.size).point(lambda v: max(0, v - 128) * 2)
    image = Image.composite(Image.new("RGB", image.size, (255, 120, 40)), image, leak.point(lambda v: v // 2))
    vignette = Image.radial_gradient("L").resize(image.size)
    return Image.composite(Image.new("RGB", image.size, (20, 10, 5)), image, vignette.point(lambda v: int(v * 0.7)))


def _toon(image: Image.Image, palette: list[RGB], rng: random.Random) -> Image.Image:
    smooth = image.filter(ImageFilter.SMOOTH_MORE).filter(ImageFilter.ModeFilter(5))
    image = ImageEnhance.Color(ImageOps.posterize(smooth, 3)).enhance(1.8)
    return ImageEnhance.Brightness(image).enhance(1.1)


def _photo(image: Image.Image, palette: list[RGB], rng: random.Random) -> Image.Image:
    # "Cleaned up": crisper, punchier, and lit from one side like a studio portrait.
    image = ImageEnhance.Contrast(image.filter(ImageFilter.DETAIL).filter(ImageFilter.SHARPEN)).enhance(1.45)
    image = ImageEnhance.Color(image).enhance(1.5)
    light = Image.linear_gradient("L").rotate(90, expand=False).resize(image.size)
    return Image.composite(image, ImageEnhance.Brightness(image).enhance(0.55), light)


def _poster(image: Image.Image, palette: list[RGB], rng: random.Random) -> Image.Image:
    # A free prompt: the picture is repainted in the prompt's own colours, flat like a poster.
    toned = _duotone(image, tuple(c // 3 for c in palette[0]), palette[-1], palette[0])  # type: ignore[arg-type]
    return ImageOps.posterize(toned.filter(ImageFilter.ModeFilter(5)), 3)


def _studio(image: Image.Image, palette: list[RGB], rng: random.Random) -> Image.Image:
    # Image-to-image: the prompt's palette as a three-tone grade, stronger per take.
    image = _duotone(image, tuple(c // 4 for c in palette[0]), palette[-1], palette[0])  # type: ignore[arg-type]
    return image.filter(ImageFilter.EDGE_ENHANCE)


# The first recipe whose word the prompt contains wins; the kind decides otherwise.
RECIPES = (
    Recipe("datamosh", ("datamosh", "pixel sorting"), _datamosh),
    Recipe("vaporwave", ("vaporwave",), _vaporwave),
    Recipe("neon cyberpunk", ("cyberpunk",), _cyberpunk),
    Recipe("hologram", ("hologram",), _hologram),
    Recipe("Ghibli tears", ("tears rolling", "brimming with"), _tears),
    Recipe("Ghibli sparkle", ("sparkles", "little stars"), _sparkle),
    Recipe("Ghibli shock", ("gasp", "astonished"), _shock),
    Recipe("emotion mask", ("mask of",), _mask),
    Recipe("watercolour", ("watercolor painting", "watercolour"), _watercolor),
    Recipe("pencil sketch", ("pencil", "sketch"), _sketch),
    # Before "vintage film": a realistic photo prompt may name a film stock.
    Recipe("raw photo", ("raw photo",), _raw_photo),
    Recipe("vintage film", ("vintage", "kodachrome", "light leak"), _vintage),
    Recipe("3D cartoon", ("3d", "cartoon", "pixar"), _toon),
    Recipe("oil painting", ("oil painting", "impasto"), _oil),
    Recipe("photo grade", ("high quality", "photograph"), _photo),
)
BY_KIND = {
    "ghibli_reaction": Recipe("Ghibli cel", (), _cel),
    "emotion_mask": Recipe("emotion mask", (), _mask),
    "neo_glitch": Recipe("neo glitch", (), _cyberpunk),
    "image_to_image": Recipe("studio grade", (), _studio),
    "custom_prompt": Recipe("prompt poster", (), _poster),
}
DEFAULT = Recipe("painted", (), _oil)


def recipe_for(*, kind: str, prompt: str) -> Recipe:
    text = prompt.lower()
    if kind == "image_to_image":
        return BY_KIND[kind]  # the studio follows the prompt's colours, whatever its style words
    for recipe in RECIPES:
        if any(word in text for word in recipe.words):
            return recipe
    return BY_KIND.get(kind, DEFAULT)


def _stars(image: Image.Image, rng: random.Random, *, count: int, colour: RGB) -> None:
    draw = ImageDraw.Draw(image, "RGBA")
    for _ in range(count):
        x, y, r = rng.randrange(image.width), rng.randrange(image.height), rng.randint(2, 6)
        draw.line([(x - r * 2, y), (x + r * 2, y)], fill=(*colour, 220), width=2)
        draw.line([(x, y - r * 2), (x, y + r * 2)], fill=(*colour, 220), width=2)


def _motifs(image: Image.Image, prompt: str, rng: random.Random) -> Image.Image:
    """Scene words the user wrote show up in the picture."""
    text = prompt.lower()
    draw = ImageDraw.Draw(image, "RGBA")
    if "night" in text:
        image = ImageEnhance.Brightness(image).enhance(0.6)
        draw = ImageDraw.Draw(image, "RGBA")
    if "rain" in text:
        for _ in range(120):
            x, y = rng.randrange(image.width), rng.randrange(image.height)
            draw.line([(x, y), (x - 6, y + 22)], fill=(210, 225, 255, 120), width=1)
    if "snow" in text:
        for _ in range(150):
            x, y, r = rng.randrange(image.width), rng.randrange(image.height), rng.randint(1, 4)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 255, 255, 200))
    if any(word in text for word in ("sunset", "sun ", "golden hour", "sunlight")):
        glow = Image.radial_gradient("L").resize(image.size).point(lambda v: max(0, 255 - v * 2))
        image = Image.composite(Image.new("RGB", image.size, (255, 170, 80)), image, glow.point(lambda v: v // 2))
    if any(word in text for word in ("sparks", "embers", "confetti", "cosmic dust", "glitter")):
        for _ in range(90):
            x, y, r = rng.randrange(image.width), rng.randrange(image.height), rng.randint(1, 3)
            colour = (255, rng.randint(120, 230), rng.randint(30, 200), 220)
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    if "stars" in text or "starry" in text:
        _stars(image, rng, count=30, colour=(255, 255, 230))
    return image


def render(image: Image.Image, *, kind: str, prompt: str, variant: int = 0) -> Image.Image:
    """The preview for one take: the preset's effect in the prompt's palette, with its motifs."""
    seed = hashlib.sha256(f"{prompt}\0{variant}".encode()).digest()
    rng = random.Random(seed)
    palette = [_shift_hue(colour, 0.11 * variant) for colour in _palette(prompt, random.Random(prompt))]
    recipe = recipe_for(kind=kind, prompt=prompt)
    picture = recipe.effect(image.convert("RGB").copy(), palette, rng)
    if variant:
        # Another take: reframed a little and toned, as a different seed would.
        inset = max(1, picture.width // 30) * variant
        box = (inset, inset // 2, picture.width - inset // 2, picture.height - inset)
        picture = picture.crop(box).resize(image.size, Image.Resampling.BICUBIC)
        picture = Image.blend(picture, Image.new("RGB", picture.size, palette[-1]), 0.12)
    return _motifs(picture, prompt, rng)


def describe(*, kind: str, prompt: str) -> str:
    return recipe_for(kind=kind, prompt=prompt).name
