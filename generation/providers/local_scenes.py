"""Offline preview scenes: a picture made from the prompt alone, for text-to-image styles.

A text-to-image model gets no photo, so the offline provider has nothing to restyle.
Rather than a flat gradient, it lays out a simple scene whose parts come from the
prompt's own words: the sky's colours and time of day ("sunset", "night", "indigo"),
the ground ("ocean", "forest", "city", "mountains", "desert", "snow"), and a subject
("portrait", "cat", "house", "tree"). The preset's look (`local_looks`) is then applied
on top, like any photo. Pure Pillow, deterministic for a given prompt.
"""

from __future__ import annotations

import hashlib
import random
import re

from PIL import Image, ImageDraw, ImageFilter

from .local_looks import PALETTE_WORDS, RGB

SKIES: dict[str, tuple[RGB, RGB]] = {
    # time-of-day words → (top, horizon) of the sky
    "night": ((10, 14, 40), (40, 50, 100)),
    "starry": ((10, 14, 40), (40, 50, 100)),
    "sunset": ((70, 60, 150), (255, 150, 90)),
    "dusk": ((60, 50, 120), (240, 130, 110)),
    "sunrise": ((120, 150, 220), (255, 200, 140)),
    "golden hour": ((110, 140, 210), (255, 190, 110)),
    "storm": ((50, 55, 70), (120, 125, 140)),
    "rain": ((80, 95, 120), (150, 160, 175)),
    "fog": ((190, 195, 200), (225, 225, 228)),
}
DAY_SKY: tuple[RGB, RGB] = ((90, 150, 230), (200, 225, 250))

GROUNDS: dict[str, RGB] = {
    "ocean": (30, 90, 160),
    "sea": (30, 90, 160),
    "beach": (30, 110, 170),
    "lake": (50, 110, 150),
    "snow": (235, 240, 250),
    "desert": (220, 180, 120),
    "city": (60, 62, 75),
    "street": (70, 70, 80),
    "forest": (40, 100, 55),
    "garden": (80, 150, 70),
    "meadow": (110, 170, 80),
    "field": (130, 170, 80),
}
DEFAULT_GROUND: RGB = (95, 140, 85)

PERSON_WORDS = ("portrait", "person", "woman", "man", "girl", "boy", "face", "child", "astronaut", "selfie")
ANIMAL_WORDS = ("cat", "dog", "fox", "kitten", "puppy", "rabbit", "bird")


def _mix(a: RGB, b: RGB, t: float) -> RGB:
    return (int(a[0] + (b[0] - a[0]) * t), int(a[1] + (b[1] - a[1]) * t), int(a[2] + (b[2] - a[2]) * t))


def _has(text: str, word: str) -> bool:
    # Whole words (plurals and "-y" allowed): "street" names no tree, "manga" no man, "snowy" snow.
    return re.search(rf"\b{re.escape(word)}(?:s|es|y)?\b", text) is not None


def _first(text: str, words: dict[str, RGB] | dict[str, tuple[RGB, RGB]]) -> str | None:
    found = sorted((text.find(word), word) for word in words if _has(text, word))
    return found[0][1] if found else None


def _vertical(size: tuple[int, int], top: RGB, bottom: RGB) -> Image.Image:
    ramp = Image.linear_gradient("L").resize(size)
    return Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), ramp)


def compose(prompt: str, *, side: int) -> Image.Image:
    """A side×side scene laid out from the prompt's words (see the module docstring)."""
    text = prompt.lower()
    rng = random.Random(hashlib.sha256(prompt.encode()).digest())
    sky_word = _first(text, SKIES)
    top, horizon_colour = SKIES[sky_word] if sky_word else DAY_SKY
    colour_word = _first(text, PALETTE_WORDS)
    if colour_word:  # a colour the user named tints the whole sky
        top, horizon_colour = (
            _mix(top, PALETTE_WORDS[colour_word], 0.45),
            _mix(horizon_colour, PALETTE_WORDS[colour_word], 0.3),
        )
    image = _vertical((side, side), top, horizon_colour)
    draw = ImageDraw.Draw(image, "RGBA")
    horizon = int(side * rng.uniform(0.58, 0.68))
    dark = sky_word in ("night", "starry")

    # The light: a moon at night, a low sun at either end of the day, a high one otherwise.
    light_x = int(side * rng.uniform(0.2, 0.8))
    light_y = horizon - side // 10 if sky_word in ("sunset", "dusk", "sunrise", "golden hour") else side // 5
    radius = side // (14 if dark else 9)
    light = (240, 240, 220) if dark else (255, 225, 150)
    if sky_word not in ("storm", "rain", "fog"):  # no sun through the clouds
        draw.ellipse((light_x - radius, light_y - radius, light_x + radius, light_y + radius), fill=(*light, 235))
    if dark:
        for _ in range(80):
            x, y = rng.randrange(side), rng.randrange(horizon)
            draw.point((x, y), fill=(255, 255, 240, 220))

    # Far hills (or mountains, when the prompt names them), then the ground.
    ground_word = _first(text, GROUNDS)
    ground = GROUNDS[ground_word] if ground_word else DEFAULT_GROUND
    if dark:
        ground = _mix(ground, (5, 8, 20), 0.6)
    peaks = _has(text, "mountain") or _has(text, "alps")
    ridge = []
    for step in range(0, side + 1, side // 12):
        lift = rng.uniform(0.12, 0.3) if peaks else rng.uniform(0.03, 0.09)
        ridge.append((step, horizon - int(side * lift)))
    far = _mix(horizon_colour, ground, 0.45)
    draw.polygon([(0, horizon), *ridge, (side, horizon)], fill=(*far, 255))
    if peaks:
        for x, y in ridge[1:-1]:  # snow caps
            draw.polygon(
                [(x - side // 40, y + side // 30), (x, y), (x + side // 40, y + side // 30)], fill=(250, 250, 255)
            )
    water = ground_word in ("ocean", "sea", "beach", "lake")
    draw.rectangle((0, horizon, side, side), fill=(*ground, 255))
    if water:
        for _ in range(40):  # glints on the water
            x, y = rng.randrange(side), rng.randrange(horizon, side)
            draw.line([(x, y), (x + side // 30, y)], fill=(*_mix(ground, light, 0.6), 200), width=2)
        if ground_word == "beach":
            draw.polygon(
                [(0, side), (0, side - side // 6), (side, side - side // 10), (side, side)], fill=(230, 205, 150)
            )
    if ground_word in ("city", "street"):
        x = 0
        while x < side:  # a skyline, lit windows at night
            width, height = rng.randint(side // 14, side // 7), rng.randint(side // 8, side // 3)
            draw.rectangle((x, horizon - height, x + width, horizon), fill=(*_mix(ground, (0, 0, 0), 0.3), 255))
            for wy in range(horizon - height + 6, horizon - 6, 12):
                for wx in range(x + 4, x + width - 4, 10):
                    if rng.random() < (0.5 if dark else 0.2):
                        draw.rectangle((wx, wy, wx + 4, wy + 5), fill=(255, 220, 120, 230))
            x += width + rng.randint(0, side // 40)
    forest = _has(text, "forest") or _has(text, "woods")
    if forest or _has(text, "tree"):
        for _ in range(14 if forest else 3):  # pines
            x = rng.randrange(side)
            base = rng.randint(horizon + side // 40, side - side // 20)
            height = rng.randint(side // 8, side // 4)
            draw.polygon([(x, base - height), (x - height // 3, base), (x + height // 3, base)], fill=(20, 70, 40, 255))

    # The subject, in the foreground's middle: a figure, an animal or a house.
    centre = side // 2 + rng.randint(-side // 10, side // 10)
    if any(_has(text, word) for word in PERSON_WORDS):
        skin = _mix((230, 190, 160), ground, 0.1)
        body = _mix(PALETTE_WORDS[colour_word], (40, 40, 60), 0.3) if colour_word else (60, 70, 110)
        head = side // 9
        draw.ellipse((centre - side // 5, side - side // 4, centre + side // 5, side + side // 6), fill=body)
        draw.rectangle(
            (centre - head // 3, side - side // 4 - head // 2, centre + head // 3, side - side // 4 + 4), fill=skin
        )
        top_of_head = side - side // 4 - head * 2
        draw.ellipse((centre - head, top_of_head, centre + head, top_of_head + int(head * 2.3)), fill=skin)
        draw.chord(
            (centre - head - 4, top_of_head - 6, centre + head + 4, top_of_head + int(head * 1.6)),
            180,
            360,
            fill=(60, 40, 30),
        )
    elif any(_has(text, word) for word in ANIMAL_WORDS):
        fur = (200, 120, 60) if _has(text, "fox") else (90, 85, 80)
        base = side - side // 8
        draw.ellipse((centre - side // 7, base - side // 9, centre + side // 7, base + side // 30), fill=fur)
        head = side // 14
        hx, hy = centre + side // 8, base - side // 8
        draw.ellipse((hx - head, hy - head, hx + head, hy + head), fill=fur)
        for ear in (-1, 1):
            draw.polygon([(hx + ear * head // 2 - head // 3, hy - head // 2), (hx + ear * head // 2, hy - head * 2),
                          (hx + ear * head // 2 + head // 3, hy - head // 2)], fill=fur)  # fmt: skip
    elif any(_has(text, word) for word in ("house", "cottage", "castle", "cabin")):
        width = side // 4
        base = horizon + side // 8
        draw.rectangle((centre - width // 2, base - width // 2, centre + width // 2, base), fill=(200, 170, 140))
        draw.polygon([(centre - width // 2 - 10, base - width // 2), (centre, base - width), (centre + width // 2 + 10, base - width // 2)],
                     fill=(150, 60, 50))  # fmt: skip
        draw.rectangle((centre - width // 10, base - width // 4, centre + width // 10, base), fill=(90, 60, 40))
    # A touch of softness, as a lens would give: the looks then add their own grain and light.
    return image.filter(ImageFilter.SMOOTH)
