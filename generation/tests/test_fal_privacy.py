"""What reaches fal with every submission: no history kept of users' photos, and fal's
own copies deleted after FAL_RESULT_RETENTION_SECONDS (CONTRACT, "What reaches fal")."""

from __future__ import annotations

import json

import pytest

from generation.registry import FAST_SDXL_I2I
from generation.tests.pipeline_helpers import run_worker, start_generation
from presets.tests.factories import PresetFactory

pytestmark = pytest.mark.django_db


def test_every_submission_asks_fal_to_store_nothing_and_expire_its_copies(user, fake_fal, settings):
    settings.FAL_RESULT_RETENTION_SECONDS = 1800
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))

    run_worker(generation)

    [submission] = [call for call in fake_fal.calls("POST") if FAST_SDXL_I2I in call.path]
    assert submission.headers["x-fal-store-io"] == "0"
    assert json.loads(submission.headers["x-fal-object-lifecycle-preference"]) == {"expiration_duration_seconds": 1800}
    assert generation.status == "succeeded"


def test_the_retention_defaults_to_an_hour(user, fake_fal):
    start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))

    run_worker(rounds=1)

    [submission] = [call for call in fake_fal.calls("POST") if FAST_SDXL_I2I in call.path]
    assert json.loads(submission.headers["x-fal-object-lifecycle-preference"]) == {"expiration_duration_seconds": 3600}
