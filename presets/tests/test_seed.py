"""The data migration's defaults, checked on the database pytest-django just migrated."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps
from django.conf import settings
from PIL import Image

from generation.registry import DEFAULT_CHAIN, FAST_SDXL_I2I, FLUX_GENERAL_I2I, GHIBLIFY, REALISTIC_VISION
from presets.models import Preset
from presets.selectors import active_presets
from presets.tests.factories import PresetFactory

pytestmark = pytest.mark.django_db

seed = importlib.import_module("presets.migrations.0002_seed_presets")
SEEDED = [data["slug"] for data in seed.PRESETS]
THUMBNAILS = settings.BASE_DIR / "static" / "img" / "presets"


def test_the_defaults_exist_after_migrate_on_an_empty_database():
    slugs = set(Preset.objects.values_list("slug", flat=True))
    assert {"ghibli_tears", "ghibli_shock", "ghibli_sparkle", "realistic", "high_quality"} <= slugs
    assert {"custom_prompt", "image_to_image"} <= slugs
    kinds = set(Preset.objects.values_list("kind", flat=True))
    assert kinds == set(Preset.Kind.values), "every kind has at least one default"
    assert Preset.objects.filter(kind=Preset.Kind.EMOTION_MASK).count() >= 3
    assert Preset.objects.filter(kind=Preset.Kind.NEO_GLITCH).count() >= 3
    assert Preset.objects.filter(kind=Preset.Kind.PRESET).count() >= 3


def test_the_migration_copies_the_registry_s_endpoints_literally():
    # The migration cannot import the registry; this catches the two drifting apart.
    assert seed.DEFAULT_CHAIN == DEFAULT_CHAIN
    assert (seed.GHIBLIFY, seed.REALISTIC_VISION, seed.FAST_SDXL_I2I, seed.FLUX_GENERAL_I2I) == (
        GHIBLIFY,
        REALISTIC_VISION,
        FAST_SDXL_I2I,
        FLUX_GENERAL_I2I,
    )


def test_the_ghibli_reactions_start_on_ghiblify_with_the_design_documents_fallbacks():
    for slug in ("ghibli_tears", "ghibli_shock", "ghibli_sparkle"):
        preset = Preset.objects.get(slug=slug)
        assert preset.kind == Preset.Kind.GHIBLI_REACTION
        assert preset.model_chain == [GHIBLIFY, REALISTIC_VISION, FAST_SDXL_I2I]
        assert preset.requires_prompt is False


def test_the_named_defaults_use_the_endpoints_the_issue_names():
    assert Preset.objects.get(slug="realistic").model_chain[0] == REALISTIC_VISION
    assert Preset.objects.get(slug="high_quality").model_chain[0] == FAST_SDXL_I2I
    custom = Preset.objects.get(slug="custom_prompt")
    assert (custom.kind, custom.prompt, custom.requires_prompt) == (Preset.Kind.CUSTOM_PROMPT, "{prompt}", True)
    studio = Preset.objects.get(slug="image_to_image")
    assert (studio.kind, studio.model_chain, studio.prompt) == (
        Preset.Kind.IMAGE_TO_IMAGE,
        [FLUX_GENERAL_I2I],
        "{prompt}",
    )
    assert (studio.requires_prompt, studio.num_images, studio.parameters) == (True, 2, {})


def test_every_default_passes_the_admin_s_validation_and_says_what_it_does():
    for preset in Preset.objects.filter(slug__in=SEEDED):
        preset.full_clean()
        assert len(preset.description) > 20, preset.slug
        assert len(preset.prompt) >= len("{prompt}"), preset.slug
        assert preset.is_active and preset.cost == 2


def test_every_default_ships_a_small_256px_thumbnail():
    for slug in SEEDED:
        path = THUMBNAILS / f"{slug}.png"
        assert path.is_file(), f"run `python -m presets.thumbnails` ({slug})"
        assert path.stat().st_size < 8 * 1024
        with Image.open(path) as image:
            assert image.size == (256, 256)
        assert Preset.objects.get(slug=slug).thumbnail_url == f"/static/img/presets/{slug}.png"


def test_thumbnails_carry_no_caption_band():
    # The page prints the style's name in the visitor's language; an English caption on a
    # dark band drawn into the picture sat right above the Indonesian name.
    band = (20, 22, 30)
    for path in THUMBNAILS.glob("*.png"):
        with Image.open(path) as image:
            bottom = image.convert("RGB").crop((0, 204, 256, 256))
        dark = sum(
            1 for pixel in bottom.get_flattened_data() if all(abs(a - b) <= 8 for a, b in zip(pixel, band, strict=True))
        )
        assert dark < 0.05 * 256 * 52, f"{path.name} still has its caption band"


def test_a_new_preset_without_a_thumbnail_shows_its_kind_s_picture():
    preset = PresetFactory(slug="brand-new-style", kind=Preset.Kind.NEO_GLITCH)
    assert preset.thumbnail_url == "/static/img/presets/kind-neo_glitch.png"
    for kind in Preset.Kind.values:
        assert (THUMBNAILS / f"kind-{kind}.png").is_file()


def test_a_preset_of_an_unknown_kind_still_gets_a_picture():
    assert Preset(slug="odd", kind="").thumbnail_url == "/static/img/presets/kind-preset.png"
    assert Preset(slug="odder", kind="made_up").thumbnail_url == "/static/img/presets/kind-preset.png"


def test_a_thumbnail_missing_from_the_manifest_does_not_break_the_listing(settings):
    # Production storage, with a manifest that predates the file: no 500, the plain URL.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    }
    settings.STATIC_ROOT = settings.MEDIA_ROOT / "empty-static-root"
    assert Preset(slug="ghibli_tears", kind="ghibli_reaction").thumbnail_url == "/static/img/presets/ghibli_tears.png"


def test_seeding_again_changes_nothing_and_unseeding_removes_only_the_defaults():
    staff_made = PresetFactory(slug="staff-made")
    before = list(Preset.objects.order_by("slug").values())
    seed.seed(apps, None)
    assert list(Preset.objects.order_by("slug").values()) == before
    seed.unseed(apps, None)
    assert list(Preset.objects.values_list("slug", flat=True)) == [staff_made.slug]
    seed.seed(apps, None)
    assert Preset.objects.count() == len(before)


def test_the_picker_lists_active_presets_in_sort_order():
    Preset.objects.filter(slug="ghibli_shock").update(is_active=False)
    PresetFactory(slug="first-of-all", sort_order=-5)
    slugs = [preset.slug for preset in active_presets()]
    assert slugs[0] == "first-of-all"
    assert "ghibli_shock" not in slugs
    orders = [preset.sort_order for preset in active_presets()]
    assert orders == sorted(orders)
    assert slugs.index("ghibli_tears") < slugs.index("custom_prompt") < slugs.index("image_to_image")
