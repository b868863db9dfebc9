"""fal's safety checker: asked for wherever the schema has it, its verdict read per image.

A flagged image is never copied, stored, shown, charged for or made public. Every image
flagged: `failed` with `content_blocked`, refunded. Some flagged: the rest is kept and
paid for, and the log says how many were withheld. An answer whose flags can't be read
fails that model (the next one tries), never a 500 and never a charge for nothing.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from credits.models import CreditEntry
from generation.models import Generation, Media
from generation.registry import FAST_SDXL_I2I, FLUX_GENERAL_I2I, GHIBLIFY, MODELS, ModelConfigError
from generation.registry import validate_model_config as validate
from generation.tests.pipeline_helpers import balance, run_worker, start_generation
from presets.tests.factories import PresetFactory

pytestmark = pytest.mark.django_db


def stored_results(settings) -> list[Path]:
    return list((Path(settings.MEDIA_ROOT) / "generated").glob("*"))


def two_images(chain: list[str] | None = None):  # type: ignore[no-untyped-def]
    return PresetFactory(kind="image_to_image", model_chain=chain or [FAST_SDXL_I2I], num_images=2, prompt="{prompt}")


def test_every_endpoint_whose_schema_has_it_is_sent_the_safety_checker_on(user, fake_fal):
    for endpoint in (GHIBLIFY, FAST_SDXL_I2I, FLUX_GENERAL_I2I):
        start_generation(user, PresetFactory(model_chain=[endpoint]))
    run_worker(rounds=2)

    for endpoint in (GHIBLIFY, FAST_SDXL_I2I, FLUX_GENERAL_I2I):
        [submission] = fake_fal.submissions(endpoint)
        assert submission.json["enable_safety_checker"] is True


def test_a_preset_cannot_turn_the_safety_checker_off():
    with pytest.raises(ModelConfigError, match="locked"):
        validate(model_chain=[FAST_SDXL_I2I], parameters={"enable_safety_checker": False}, loras=[], num_images=1)
    assert all(spec.locked.get("enable_safety_checker") is True for spec in MODELS.values())


def test_all_images_flagged_fails_as_content_blocked_and_refunds(user, fake_fal, fake_cloudinary, client):
    fake_fal.flag_images(FAST_SDXL_I2I, [True, True])
    generation = start_generation(user, two_images(), is_public=True)

    run_worker(generation)

    assert generation.status == Generation.Status.FAILED
    assert generation.error_code == "content_blocked"
    assert "nothing was charged" in generation.error_message and "Try another photo" in generation.error_message
    assert balance(user) == 30
    assert CreditEntry.objects.filter(generation=generation, reason="refund").count() == 1
    assert not Media.objects.filter(generation=generation).exists()
    assert fake_cloudinary.uploads == []
    assert generation.attempts.get().blocked_images == 2
    assert client.get("/api/feed").json()["items"] == []


def test_all_flagged_stores_nothing_locally_either(user, fake_fal, settings):
    fake_fal.flag_images(FAST_SDXL_I2I, [True])
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))

    run_worker(generation)

    assert generation.error_code == "content_blocked"
    assert stored_results(settings) == []
    assert not fake_fal.calls("GET", "/files/")  # the black square was never even fetched


def test_some_images_flagged_keeps_and_charges_the_rest(user, fake_fal, settings, api_client):
    fake_fal.flag_images(FAST_SDXL_I2I, [True, False])
    generation = start_generation(user, two_images(), is_public=True)

    run_worker(generation)

    assert generation.status == Generation.Status.SUCCEEDED
    [media] = generation.media.all()
    assert media.index == 1 and media.persisted and "-black" not in media.original_url
    assert [path.name for path in stored_results(settings)] == [Path(media.storage_key).name]
    assert balance(user) == 28  # the user keeps, and pays for, the clean image
    assert "1 of 2 images was withheld by the safety filter" in [line["message"] for line in generation.logs]
    assert generation.attempts.get().blocked_images == 1
    body = api_client.get(f"/api/generations/{generation.pk}").json()
    assert [image["id"] for image in body["images"]] == [str(media.pk)]
    assert [item["id"] for item in api_client.get("/api/feed").json()["items"]] == [str(media.pk)]


@pytest.mark.parametrize(
    "flags",
    [
        "yes",  # not a list
        [True],  # fewer flags than images
        [False, False, True],  # more
        [1, 0],  # not true/false
        [None, False],  # a flag that is neither
    ],
)
def test_unreadable_flags_fail_that_model_and_the_next_one_tries(user, fake_fal, flags):
    fake_fal.flag_images(FAST_SDXL_I2I, flags)
    generation = start_generation(user, two_images([FAST_SDXL_I2I, FLUX_GENERAL_I2I]))

    run_worker(generation)

    assert generation.status == Generation.Status.SUCCEEDED
    first, second = generation.attempts.order_by("position")
    assert first.status == "failed" and "could not be read safely" in first.error
    assert {media.model for media in generation.media.all()} == {FLUX_GENERAL_I2I}
    assert balance(user) == 28


def test_unreadable_flags_on_the_last_model_refund(user, fake_fal):
    fake_fal.flag_images(FAST_SDXL_I2I, [True])
    generation = start_generation(user, two_images())

    run_worker(generation)

    assert generation.status == Generation.Status.FAILED and generation.error_code == "all_models_failed"
    assert balance(user) == 30
    assert not generation.media.exists()


def test_an_answer_without_images_fails_that_model(user, fake_fal):
    fake_fal.set_result(FAST_SDXL_I2I, {"images": [], "has_nsfw_concepts": []})
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))

    run_worker(generation)

    assert generation.status == Generation.Status.FAILED and generation.error_code == "all_models_failed"
    assert balance(user) == 30


def test_a_flagged_result_delivered_by_webhook_is_decided_by_the_worker(client, user, fake_fal, settings):
    fake_fal.manual = True
    fake_fal.flag_images(FAST_SDXL_I2I, [True, True])
    generation = start_generation(user, two_images())
    run_worker(rounds=1)
    attempt = generation.attempts.get()
    fake_fal.advance(attempt.fal_job_id, steps=3)
    body, headers = fake_fal.webhook_request(attempt.fal_job_id)
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "Content-Type"}

    response = client.post("/api/fal/webhook", data=body, content_type="application/json", **extra)

    assert response.status_code == 200
    assert not Media.objects.filter(generation=generation).exists()  # nothing stored from the webhook
    run_worker(generation)
    assert generation.error_code == "content_blocked"
    assert balance(user) == 30
    assert stored_results(settings) == []
