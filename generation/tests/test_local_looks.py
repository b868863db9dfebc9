"""The offline preview is honest and useful: each seeded preset renders visibly
differently from the others and from the photo, the prompt's words shape the picture,
image-to-image takes differ, and nothing claims a fal model ran."""

from __future__ import annotations

import itertools

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from generation.providers import local_looks
from presets.models import Preset

pytestmark = pytest.mark.django_db


def portrait() -> Image.Image:
    image = Image.new("RGB", (240, 300), (120, 160, 210))
    draw = ImageDraw.Draw(image)
    draw.polygon([(0, 220), (120, 180), (240, 210), (240, 300), (0, 300)], fill=(64, 120, 88))
    draw.ellipse((80, 90, 160, 180), fill=(236, 190, 160))
    draw.ellipse((70, 70, 170, 120), fill=(60, 40, 36))
    draw.rounded_rectangle((60, 190, 180, 300), radius=40, fill=(190, 70, 80))
    return image


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per channel, 0–255."""
    return sum(ImageStat.Stat(ImageChops.difference(a.convert("RGB"), b.convert("RGB"))).mean) / 3


def _prompt(preset: Preset, words: str = "a lighthouse") -> str:
    return preset.prompt.replace("{prompt}", words) if "{prompt}" in preset.prompt else preset.prompt


def test_every_seeded_preset_looks_different_from_the_others_and_from_the_photo():
    source = portrait()
    presets = list(Preset.objects.filter(is_active=True).order_by("sort_order"))
    assert len(presets) >= 10, "the seeded presets are expected here"
    renders = {p.slug: local_looks.render(source, kind=p.kind, prompt=_prompt(p)) for p in presets}
    for slug, picture in renders.items():
        assert picture.size == source.size
        assert difference(picture, source) > 12, f"{slug} looks too much like the photo"
    too_close = [
        (a, b, round(difference(renders[a], renders[b]), 1))
        for a, b in itertools.combinations(renders, 2)
        if difference(renders[a], renders[b]) < 8
    ]
    assert not too_close, f"presets that look alike: {too_close}"


def test_the_prompts_words_shape_the_picture():
    source = portrait()
    sunset = local_looks.render(source, kind="custom_prompt", prompt="a golden sunset over an orange sea")
    night = local_looks.render(source, kind="custom_prompt", prompt="a rainy night in an indigo city")
    assert difference(sunset, night) > 15
    warm, cool = ImageStat.Stat(sunset).mean, ImageStat.Stat(night).mean
    assert warm[0] > warm[2], "a golden sunset comes out warm"
    assert sum(cool) < sum(warm), "a night comes out darker"


def test_image_to_image_takes_differ():
    source = portrait()
    first = local_looks.render(source, kind="image_to_image", prompt="a watercolor of a fox", variant=0)
    second = local_looks.render(source, kind="image_to_image", prompt="a watercolor of a fox", variant=1)
    assert difference(first, second) > 10
    again = local_looks.render(source, kind="image_to_image", prompt="a watercolor of a fox", variant=0)
    assert difference(first, again) == 0, "the same take is the same picture"


def test_the_offline_renderer_is_named_not_a_fal_model(settings):
    from generation.labels import model_label

    settings.OFFLINE_MODE = True
    assert model_label("fal-ai/ghiblify").startswith("the offline preview renderer")
    settings.OFFLINE_MODE = False
    assert model_label("fal-ai/ghiblify") == "Ghiblify"
