"""The feed's first page is kept a moment per process (generation/first_page.py): within
FEED_CACHE_SECONDS it is answered again without a query, per language and per site
address; later pages never are; 0 turns it off."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from generation import first_page
from generation.tests.factories import GenerationFactory, MediaFactory
from presets.tests.factories import PresetFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def clock(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(first_page, "_clock", lambda: now[0])
    return now


def _public(user, name: str, **extra):
    return MediaFactory(generation=GenerationFactory(user=user, preset_name=name), is_public=True, **extra)


def _feed_queries(client: Client, path: str) -> tuple[str, list[str]]:
    with CaptureQueriesContext(connection) as queries:
        answer = client.get(path)
    assert answer.status_code == 200
    return answer.content.decode(), [query["sql"] for query in queries if "generation_media" in query["sql"]]


def test_the_first_page_is_answered_again_for_a_second_then_read_anew(user, clock):
    _public(user, "First light")
    page, reads = _feed_queries(Client(), "/feed/")
    assert "First light" in page and len(reads) == 1

    _public(user, "Second light")
    clock[0] += 0.9
    page, reads = _feed_queries(Client(), "/feed/")
    assert "First light" in page and "Second light" not in page and reads == [], "kept: no query"
    assert 'data-testid="feed-grid"' in page, "the page around it is rendered for this visitor"

    clock[0] += 0.2
    page, reads = _feed_queries(Client(), "/feed/")
    assert "Second light" in page and len(reads) == 1


def test_the_api_first_page_is_kept_per_address_and_page_size(user, clock, settings):
    settings.ALLOWED_HOSTS = ["testserver", "localhost"]
    _public(user, "One", url="/media/generated/one.png")
    first = json.loads(Client().get("/api/feed").content)
    _public(user, "Two", url="/media/generated/two.png")
    assert json.loads(Client().get("/api/feed").content) == first
    # Another page size, or another address the site answers at, is made for itself.
    assert len(json.loads(Client().get("/api/feed?limit=5").content)["items"]) == 2
    other_host = json.loads(Client(HTTP_HOST="localhost").get("/api/feed").content)
    assert len(other_host["items"]) == 2 and other_host["items"][0]["url"].startswith("http://localhost/")


def test_each_language_gets_its_own_first_page(user, clock):
    preset = PresetFactory(slug="kept_style", name="Oil painting", name_id="Lukisan minyak")
    MediaFactory(
        generation=GenerationFactory(user=user, preset=preset, preset_slug=preset.slug, preset_name="Oil painting"),
        is_public=True,
    )
    english = Client(HTTP_ACCEPT_LANGUAGE="en").get("/feed/").content.decode()
    indonesian = Client(HTTP_ACCEPT_LANGUAGE="id").get("/feed/").content.decode()
    assert "Oil painting" in english and "Lukisan minyak" not in english
    assert "Lukisan minyak" in indonesian


def test_later_pages_are_never_kept(user, clock):
    for number in range(30):
        _public(user, f"Image {number}")
    first, _ = _feed_queries(Client(), "/feed/")
    cursor = first.split('hx-get="?cursor=', 1)[1].split('"', 1)[0]
    _, reads = _feed_queries(Client(), f"/feed/?cursor={cursor}")
    _, again = _feed_queries(Client(), f"/feed/?cursor={cursor}")
    assert len(reads) == 1 and len(again) == 1
    api = json.loads(Client().get("/api/feed?limit=5").content)
    _, api_reads = _feed_queries(Client(), f"/api/feed?limit=5&cursor={api['next_cursor']}")
    assert len(api_reads) == 1


def test_zero_keeps_nothing(user, clock, settings):
    settings.FEED_CACHE_SECONDS = 0
    _public(user, "Early")
    Client().get("/feed/")
    _public(user, "Late")
    page, reads = _feed_queries(Client(), "/feed/")
    assert "Late" in page and len(reads) == 1


def test_what_is_kept_stays_bounded(user, clock, monkeypatch):
    monkeypatch.setattr(first_page, "MAX_KEPT", 4)
    for size in range(1, 11):
        assert Client().get(f"/api/feed?limit={size}").status_code == 200
        assert len(first_page.kept._values) <= 4
