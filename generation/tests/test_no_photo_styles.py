"""Styles that need no photo (text-to-image, e.g. the seeded "Realistic"): the API and the
studio form take them without an image, the chain skips every model that would need one,
and offline preview mode paints a prompt-shaped picture from nothing (issue 19)."""

from __future__ import annotations

import json
import re

import pytest
from django.conf import settings
from PIL import Image, ImageChops, ImageStat

from credits import ledger
from credits.selectors import balance_of
from generation.models import Attempt, Generation
from generation.providers.local import LocalProvider
from generation.providers.local_scenes import compose
from generation.registry import (
    FAST_SDXL_I2I,
    FLUX_GENERAL_I2I,
    GHIBLIFY,
    REALISTIC_VISION,
    chain_needs_image,
    chain_without_image,
)
from generation.tests.pipeline_helpers import run_worker
from presets.models import Preset

from .api_support import assert_error, assert_nothing_charged_or_stored, photo, stored_files

URL = "/api/generations"
pytestmark = pytest.mark.django_db


def post_json(client, body, **headers):
    return client.post(URL, data=json.dumps(body), content_type="application/json", **headers)


@pytest.fixture
def funded(user):
    ledger.ensure_daily_allowance(user=user)
    return balance_of(user=user)


# --- Which styles need a photo ----------------------------------------------------------------


def test_the_first_model_of_a_chain_decides_whether_it_needs_a_photo():
    assert chain_needs_image([GHIBLIFY, REALISTIC_VISION, FAST_SDXL_I2I]) is True
    assert chain_needs_image([FLUX_GENERAL_I2I]) is True
    assert chain_needs_image([REALISTIC_VISION, FAST_SDXL_I2I]) is False
    # Unknown or empty: the safe side is to ask for a photo.
    assert chain_needs_image(["fal-ai/not-a-model"]) is True
    assert chain_needs_image([]) is True


def test_a_chain_used_without_a_photo_keeps_only_the_models_that_take_none():
    assert chain_without_image([REALISTIC_VISION, FAST_SDXL_I2I]) == [REALISTIC_VISION]
    assert chain_without_image([GHIBLIFY, REALISTIC_VISION, FAST_SDXL_I2I]) == [REALISTIC_VISION]
    assert chain_without_image([FLUX_GENERAL_I2I]) == []


def test_the_presets_list_says_which_styles_need_a_photo(client):
    body = {item["slug"]: item for item in client.get("/api/presets").json()}

    assert body["realistic"]["needs_photo"] is False
    assert body["ghibli_tears"]["needs_photo"] is True
    assert body["image_to_image"]["needs_photo"] is True
    # Every seeded style says it, and agrees with its chain.
    for preset in Preset.objects.filter(is_active=True):
        assert body[preset.slug]["needs_photo"] is chain_needs_image(preset.model_chain)


# --- POST /api/generations without an image ------------------------------------------------------


@pytest.mark.parametrize("encoding", ["multipart", "json"])
def test_a_text_to_image_style_starts_without_an_image(api_client, user, funded, encoding):
    fields = {"preset": "realistic", "prompt": "a lighthouse on a cliff at sunset"}
    response = api_client.post(URL, fields) if encoding == "multipart" else post_json(api_client, fields)

    assert response.status_code == 202, response.content
    generation = Generation.objects.get(pk=response.json()["id"])
    assert generation.source_image.name == ""
    assert (generation.source_width, generation.source_height) == (None, None)
    # The seeded chain's image model (the fallback) is not part of this generation.
    assert generation.model_chain == [REALISTIC_VISION]
    assert stored_files() == []
    assert balance_of(user=user) == funded - settings.GENERATION_COST


@pytest.mark.parametrize("encoding", ["multipart", "json"])
def test_a_style_that_transforms_a_photo_still_refuses_a_missing_image(api_client, user, funded, encoding):
    fields = {"preset": "ghibli_tears", "prompt": ""}
    response = api_client.post(URL, fields) if encoding == "multipart" else post_json(api_client, fields)

    body = assert_error(response, 422, "invalid_input")
    assert body["detail"] == {"field": "image"}
    assert_nothing_charged_or_stored(user, balance_before=funded)


def test_the_refusal_is_in_the_callers_language_with_the_same_code(api_client, user, funded):
    response = post_json(api_client, {"preset": "ghibli_tears"}, HTTP_ACCEPT_LANGUAGE="id")

    body = assert_error(response, 422, "invalid_input")
    assert (
        body["message"] != "This style transforms a photo: send one as `image` (or reuse one with `source_generation`)."
    )
    assert "`image`" in body["message"]


def test_a_text_to_image_style_still_needs_its_prompt(api_client, user, funded):
    response = post_json(api_client, {"preset": "realistic"})

    assert assert_error(response, 422, "invalid_input")["detail"] == {"field": "prompt"}
    assert_nothing_charged_or_stored(user, balance_before=funded)


def test_a_photo_sent_to_a_text_to_image_style_keeps_the_whole_chain(api_client, user, funded):
    response = api_client.post(URL, {"image": photo(), "preset": "realistic", "prompt": "a lighthouse"})

    assert response.status_code == 202, response.content
    generation = Generation.objects.get()
    assert generation.source_image.name
    assert generation.model_chain == [REALISTIC_VISION, FAST_SDXL_I2I]


def test_without_a_photo_the_chain_never_falls_back_to_an_image_model(api_client, user, funded, fake_fal):
    fake_fal.fail_submit(REALISTIC_VISION, status=500)
    created = post_json(api_client, {"preset": "realistic", "prompt": "a lighthouse"}).json()
    generation = Generation.objects.get(pk=created["id"])

    run_worker(generation)

    assert generation.status == Generation.Status.FAILED
    assert list(generation.attempts.values_list("model", "status")) == [(REALISTIC_VISION, Attempt.Status.FAILED)]
    assert fake_fal.submissions(FAST_SDXL_I2I) == []
    assert balance_of(user=user) == funded  # refunded


def test_without_a_photo_fal_gets_the_prompt_and_no_image(api_client, user, funded, fake_fal):
    created = post_json(api_client, {"preset": "realistic", "prompt": "a lighthouse"}).json()
    generation = Generation.objects.get(pk=created["id"])

    run_worker(generation)

    assert generation.status == Generation.Status.SUCCEEDED
    [submission] = fake_fal.submissions(REALISTIC_VISION)
    assert "image_url" not in submission.json
    assert submission.json["prompt"] == generation.prompt_sent
    assert "a lighthouse" in submission.json["prompt"]


# --- Offline preview mode ------------------------------------------------------------------------


def _detail_across_rows(image: Image.Image) -> float:
    """How much a row varies from left to right, on average: about 0 for a vertical gradient."""
    grey = image.convert("L")
    rows = range(0, grey.height, 8)
    return sum(ImageStat.Stat(grey.crop((0, y, grey.width, y + 1))).stddev[0] for y in rows) / len(rows)


def test_a_scene_is_laid_out_from_the_prompts_words():
    day = compose("a meadow", side=256)
    night = compose("a meadow at night", side=256)
    cottage = compose("a cottage in a meadow", side=256)
    city = compose("a city skyline at night", side=256)

    sky = (0, 0, 256, 64)
    assert sum(ImageStat.Stat(night.crop(sky)).mean) < sum(ImageStat.Stat(day.crop(sky)).mean) - 150
    # The subject stands in the foreground: a cottage changes the middle of the ground.
    middle = (64, 150, 192, 250)
    assert max(ImageStat.Stat(ImageChops.difference(day, cottage).crop(middle)).mean) > 10
    # A city at night has lit windows: warm, bright specks under the horizon.
    lit = sum(1 for r, g, b in city.get_flattened_data() if r > 200 and g > 160 and b < 170)
    assert lit > 20


def _offline_result(api_client, prompt: str) -> tuple[Generation, Image.Image]:
    created = post_json(api_client, {"preset": "realistic", "prompt": prompt}).json()
    generation = run_worker(Generation.objects.get(pk=created["id"]))
    assert generation is not None  # given a generation, run_worker hands it back
    assert generation.status == Generation.Status.SUCCEEDED, generation.error_message
    media = generation.media.get()
    with Image.open(settings.MEDIA_ROOT / media.storage_key) as image:
        return generation, image.convert("RGB")


def test_offline_a_text_to_image_style_paints_a_picture_shaped_by_the_prompt(api_client, user, funded):
    assert settings.FAL_KEY == ""
    night_generation, night = _offline_result(api_client, "a city street at night")
    _, beach = _offline_result(api_client, "a woman on a beach at sunset")

    # A real picture, not a gradient: things stand side by side along each row.
    assert night.size[0] >= 512
    assert _detail_across_rows(night) > 5 and _detail_across_rows(beach) > 5
    # The prompt's words shape it: night is darker than a sunset beach, and the two differ.
    assert sum(ImageStat.Stat(night).mean) < sum(ImageStat.Stat(beach).mean) - 60
    assert max(ImageStat.Stat(ImageChops.difference(night, beach)).mean) > 25
    # The log names the offline renderer, not a fal model.
    assert any("offline preview renderer" in line["message"] for line in night_generation.logs)


def test_offline_the_progress_lines_say_no_photo_is_used(settings):
    settings.OFFLINE_QUEUE_SECONDS = settings.OFFLINE_RUN_SECONDS = 0
    provider = LocalProvider()
    without = provider.submit(REALISTIC_VISION, {"prompt": "a lighthouse"}, kind="preset")
    with_photo = provider.submit(GHIBLIFY, {"image_url": "data:image/png;base64,AAAA"}, kind="ghibli_reaction")

    lines = [line["message"] for line in provider.status(REALISTIC_VISION, without).logs]
    assert "Laying out a scene from your prompt (no photo needed)" in lines
    assert "Loading your photo" not in lines
    assert "Loading your photo" in [line["message"] for line in provider.status(GHIBLIFY, with_photo).logs]


def test_offline_the_same_prompt_paints_the_same_scene(api_client, user, funded):
    _, first = _offline_result(api_client, "a red fox in a snowy forest")
    _, second = _offline_result(api_client, "a red fox in a snowy forest")

    assert ImageChops.difference(first, second).getbbox() is None


# --- The studio form ---------------------------------------------------------------------------


def test_the_studio_form_starts_a_text_to_image_style_without_a_photo(client, user, funded):
    client.force_login(user)

    response = client.post("/", {"preset": "realistic", "prompt": "a lighthouse at dawn"})

    generation = Generation.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/g/{generation.pk}/"
    assert generation.model_chain == [REALISTIC_VISION] and not generation.source_image


def test_the_studio_form_still_asks_for_a_photo_for_a_photo_style(client, user, funded):
    client.force_login(user)

    response = client.post("/", {"preset": "ghibli_tears"})

    assert response.status_code == 422
    assert "Choose a photo to transform." in response.content.decode()
    assert not Generation.objects.exists()


def test_the_studio_marks_the_styles_that_need_no_photo(client, user, funded):
    client.force_login(user)

    page = client.get("/").content.decode()

    assert re.search(r'value="realistic" [^>]*data-needs-photo="false"', page)
    assert re.search(r'value="ghibli_tears" [^>]*data-needs-photo="true"', page)
    assert (
        page.count('data-testid="no-photo-badge"')
        == Preset.objects.filter(is_active=True).filter(model_chain__0=REALISTIC_VISION).count()
    )
