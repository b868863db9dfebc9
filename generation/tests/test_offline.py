"""Offline preview mode: no FAL_KEY, no network; the local provider makes real images."""

from __future__ import annotations

import pytest
from django.conf import settings
from PIL import Image, ImageChops, ImageStat

from generation.models import Attempt, Generation
from generation.providers import get_provider
from generation.providers.base import ProviderState
from generation.providers.local import LocalProvider
from generation.registry import FAST_SDXL_I2I, FLUX_GENERAL_I2I, GHIBLIFY
from generation.services import source_image_url
from generation.storage import result_name
from generation.tests.pipeline_helpers import balance, run_worker, start_generation
from presets.tests.factories import PresetFactory

pytestmark = pytest.mark.django_db


def test_offline_mode_generates_a_real_image_through_the_same_pipeline(user, settings):
    assert settings.FAL_KEY == ""
    preset = PresetFactory(kind="ghibli_reaction", model_chain=[GHIBLIFY])
    generation = start_generation(user, preset)

    run_worker(generation)

    assert generation.status == Generation.Status.SUCCEEDED
    attempt = generation.attempts.get()
    assert attempt.fal_job_id.startswith("local-")
    media = generation.media.get()
    assert media.persisted and media.fal_job_id == attempt.fal_job_id
    assert media.storage_key == f"generated/{result_name(generation.pk, 0)}.png"
    with Image.open(settings.MEDIA_ROOT / media.storage_key) as image:
        image.load()
        assert image.size == (320, 240)
    assert balance(user) == settings.DAILY_CREDITS - 2


def test_the_studio_offline_makes_as_many_images_as_asked(user):
    preset = PresetFactory(kind="image_to_image", model_chain=[FLUX_GENERAL_I2I], num_images=2)
    generation = start_generation(user, preset)

    run_worker(generation)

    assert generation.status == Generation.Status.SUCCEEDED
    assert generation.media.count() == 2


def _render(kind: str, photo_url: str) -> Image.Image:
    provider = LocalProvider()
    request_id = provider.submit(GHIBLIFY, {"image_url": photo_url}, kind=kind)
    url = provider.result(GHIBLIFY, request_id)["image"]["url"]
    return Image.open(settings.MEDIA_ROOT / url.removeprefix(settings.MEDIA_URL)).convert("RGB")


def test_each_kind_has_its_own_look(user):
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)
    photo_url = source_image_url(generation)
    looks = {kind: _render(kind, photo_url) for kind in ("ghibli_reaction", "neo_glitch", "emotion_mask")}

    kinds = list(looks)
    for i, first in enumerate(kinds):
        for second in kinds[i + 1 :]:
            difference = ImageStat.Stat(ImageChops.difference(looks[first], looks[second])).mean
            assert sum(difference) / 3 > 10, (first, second)
    # Scanlines: the glitch look darkens every fourth row.
    glitch = looks["neo_glitch"]
    row = [glitch.getpixel((x, 0)) for x in range(glitch.width)]
    below = [glitch.getpixel((x, 1)) for x in range(glitch.width)]
    assert sum(map(sum, row)) < sum(map(sum, below))


def test_the_simulated_queue_reports_position_then_logs_then_completion(settings):
    settings.OFFLINE_QUEUE_SECONDS = 60
    provider = LocalProvider()
    request_id = provider.submit(GHIBLIFY, {"image_url": ""}, kind="ghibli_reaction")
    queued = LocalProvider().status(GHIBLIFY, request_id)  # a fresh instance: state is in files
    assert queued.state == ProviderState.IN_QUEUE and queued.queue_position is not None

    settings.OFFLINE_QUEUE_SECONDS = 0
    settings.OFFLINE_RUN_SECONDS = 0
    done = LocalProvider().status(GHIBLIFY, request_id)
    assert done.state == ProviderState.COMPLETED and not done.error
    assert any("Ghibli cel" in line["message"] for line in done.logs)
    assert any("rendering locally" in line["message"] for line in done.logs)


def test_canceling_offline_is_seen_by_another_process(user, settings):
    settings.OFFLINE_QUEUE_SECONDS = 60
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)
    run_worker(rounds=1)
    attempt = generation.attempts.get()
    assert attempt.status == Attempt.Status.QUEUED

    from generation import services

    services.generation_cancel(generation_id=generation.pk, user=user)

    status = get_provider(attempt.fal_job_id).status(attempt.model, attempt.fal_job_id)
    assert status.state == ProviderState.COMPLETED and status.error
    assert balance(user) == settings.DAILY_CREDITS


def test_the_sweeper_prunes_old_offline_job_files(settings):
    import os
    import time

    from generation import services

    provider = LocalProvider()
    old = provider.submit(GHIBLIFY, {"image_url": ""}, kind="ghibli_reaction")
    fresh = provider.submit(GHIBLIFY, {"image_url": ""}, kind="ghibli_reaction")
    old_file = settings.OFFLINE_PROVIDER_DIR / f"{old}.json"
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(old_file, (two_days_ago, two_days_ago))

    services.generation_sweep()

    assert not old_file.exists()
    assert (settings.OFFLINE_PROVIDER_DIR / f"{fresh}.json").exists()


def test_offline_images_answer_absolute_addresses_in_the_api(user, api_client):
    # `original_url` is fal's address in production; offline it is a path on this site,
    # which means nothing to an API client: absolute, like `url`.
    generation = start_generation(user, PresetFactory(kind="ghibli_reaction", model_chain=[GHIBLIFY]))
    run_worker(generation)

    [image] = api_client.get(f"/api/generations/{generation.pk}").json()["images"]

    assert image["url"].startswith("http://testserver/")
    assert image["original_url"].startswith("http://testserver/media/")
    assert api_client.get(image["original_url"]).status_code == 200
