"""GET /api/presets: public, active presets only, in display order, contract fields."""

from __future__ import annotations

import pytest
from django.test import Client

from presets.models import Preset
from presets.tests.factories import PresetFactory

PRESET_KEYS = {
    "slug",
    "name",
    "kind",
    "description",
    "requires_prompt",
    "needs_photo",
    "num_images",
    "cost",
    "thumbnail_url",
}  # CONTRACT's fields plus needs_photo (issue 19)


def test_it_lists_active_presets_in_display_order_without_sign_in(client, db):
    Preset.objects.update(is_active=False)  # hide the seeded defaults: this test owns the list
    PresetFactory(slug="second", name="B", sort_order=2)
    PresetFactory(slug="first", name="A", sort_order=1, requires_prompt=True, num_images=2, description="d")
    PresetFactory(slug="retired", sort_order=0, is_active=False)

    response = client.get("/api/presets")

    assert response.status_code == 200
    body = response.json()
    assert [item["slug"] for item in body] == ["first", "second"]
    assert all(set(item) == PRESET_KEYS for item in body)
    first = body[0]
    assert (first["requires_prompt"], first["num_images"], first["cost"], first["description"]) == (True, 2, 2, "d")
    # A static default (per slug, else per kind) when no thumbnail was uploaded, made
    # absolute: a site-relative path means nothing to an API client.
    assert first["thumbnail_url"].startswith("http://testserver/static/img/presets/")
    assert first["thumbnail_url"] == "http://testserver" + Preset.objects.get(slug="first").thumbnail_url


def test_the_seeded_studio_preset_is_listed(client, db):
    slugs = {item["slug"]: item for item in client.get("/api/presets").json()}

    assert slugs["image_to_image"]["kind"] == "image_to_image"
    assert slugs["image_to_image"]["requires_prompt"] is True


def test_the_list_costs_one_query(client, db, django_assert_num_queries):
    # Plus the per-IP rate-limit count, one upsert in the database when there is no Redis.
    with django_assert_num_queries(2):
        assert client.get("/api/presets").status_code == 200


@pytest.mark.usefixtures("clear_of_rate_window_end")
def test_it_is_rate_limited_per_ip(db, settings):
    settings.RATE_LIMIT_ANON_PER_MINUTE = (2, 60)
    client = Client(REMOTE_ADDR="192.0.2.7")
    assert [client.get("/api/presets").status_code for _ in range(3)] == [200, 200, 429]
    assert client.get("/api/presets").json()["code"] == "rate_limited"
