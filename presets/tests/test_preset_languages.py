"""Preset names and descriptions per language: seeded Indonesian text, admin-editable, English fallback."""

from __future__ import annotations

import importlib

import pytest
from django.utils import translation

from presets.models import Preset
from presets.tests.factories import PresetFactory

pytestmark = pytest.mark.django_db

seed = importlib.import_module("presets.migrations.0002_seed_presets")
indonesian = importlib.import_module("presets.migrations.0004_seed_indonesian_text")


def test_every_seeded_preset_has_indonesian_text_after_migrate():
    assert set(indonesian.INDONESIAN) == {data["slug"] for data in seed.PRESETS}
    for preset in Preset.objects.filter(slug__in=indonesian.INDONESIAN):
        assert preset.name_id, preset.slug
        assert preset.description_id, preset.slug
        assert preset.description_id != preset.description


def test_the_migration_keeps_text_staff_wrote():
    from django.apps import apps

    preset = Preset.objects.get(slug="watercolor")
    preset.name_id = "Cat air (edisi staf)"
    preset.description_id = ""
    preset.save()
    indonesian.fill(apps, None)
    preset.refresh_from_db()
    assert preset.name_id == "Cat air (edisi staf)"
    assert preset.description_id == indonesian.INDONESIAN["watercolor"][1]


def test_display_text_follows_the_active_language_and_falls_back_to_english():
    preset = PresetFactory(name="Sunset", description="Warm light.", name_id="Senja", description_id="")
    with translation.override("id"):
        assert preset.display_name == "Senja"
        assert preset.display_description == "Warm light."  # empty → English
    with translation.override("en"):
        assert preset.display_name == "Sunset"


def test_the_api_lists_presets_in_the_accept_language(client):
    english = {p["slug"]: p for p in client.get("/api/presets", HTTP_ACCEPT_LANGUAGE="en").json()}
    bahasa = {p["slug"]: p for p in client.get("/api/presets", HTTP_ACCEPT_LANGUAGE="id-ID,id;q=0.9").json()}
    assert english["oil_painting"]["name"] == "Oil painting"
    assert bahasa["oil_painting"]["name"] == "Lukisan cat minyak"
    assert bahasa["oil_painting"]["description"].startswith("Potret cat minyak klasik")
    assert bahasa.keys() == english.keys()  # slugs never change with the language
    unknown = {p["slug"]: p for p in client.get("/api/presets", HTTP_ACCEPT_LANGUAGE="xx-YY").json()}
    assert unknown["oil_painting"]["name"] == "Oil painting"


def test_staff_edit_the_indonesian_text_in_the_admin(staff_client):
    preset = Preset.objects.get(slug="watercolor")
    page = staff_client.get(f"/admin/presets/preset/{preset.pk}/change/").content.decode()
    assert 'name="name_id"' in page
    assert 'name="description_id"' in page
    assert "Bahasa Indonesia" in page
