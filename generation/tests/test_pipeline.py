"""The generation pipeline end to end, against the fake fal queue (HTTPS) and fake Cloudinary."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone
from PIL import Image

from credits.models import CreditEntry
from generation.models import Attempt, Generation, Media
from generation.registry import FAST_SDXL_I2I, FLUX_GENERAL_I2I, GHIBLIFY, REALISTIC_VISION
from generation.storage import result_name
from generation.tests.pipeline_helpers import balance, run_worker, start_generation
from presets.tests.factories import PresetFactory

pytestmark = pytest.mark.django_db

CHAIN = [GHIBLIFY, REALISTIC_VISION, FAST_SDXL_I2I]


def test_it_generates_a_ghibli_reaction_end_to_end(user, fake_fal, fake_cloudinary):
    preset = PresetFactory(kind="ghibli_reaction", model_chain=CHAIN, prompt="ghibli style, {prompt}")
    generation = start_generation(user, preset)
    assert balance(user) == settings.DAILY_CREDITS - 2

    run_worker(generation)

    assert generation.status == Generation.Status.SUCCEEDED
    [submission] = fake_fal.submissions()
    assert submission.path == "/fal-ai/ghiblify"
    assert submission.headers["authorization"] == "Key fake-key-id:fake-key-secret"
    assert submission.json["image_url"].startswith("data:image/jpeg;base64,")
    [media] = generation.media.all()
    [attempt] = generation.attempts.all()
    assert attempt.status == Attempt.Status.SUCCEEDED and attempt.fal_job_id
    assert media.fal_job_id == attempt.fal_job_id and media.model == GHIBLIFY
    assert media.persisted and media.url == f"/images/{media.storage_key}"
    assert media.original_url.startswith(fake_fal.base_url + "/files/")
    [upload] = fake_cloudinary.uploads
    assert upload["folder"] == "stefna/generated"
    assert upload["public_id"] == result_name(generation.pk, 0)
    assert upload["overwrite"] == "1"
    assert upload["file_url"] == media.original_url
    assert balance(user) == settings.DAILY_CREDITS - 2
    assert CreditEntry.objects.filter(generation=generation, reason="capture").count() == 1


def test_it_stores_results_locally_without_cloudinary(user, fake_fal):
    preset = PresetFactory(kind="neo_glitch", model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)

    run_worker(generation)

    [media] = Media.objects.filter(generation=generation)
    assert media.persisted
    assert media.storage_key == f"generated/{result_name(generation.pk, 0)}.png"
    with Image.open(settings.MEDIA_ROOT / media.storage_key) as image:
        assert image.size == (64, 48)


def test_the_studio_sends_flux_exactly_the_locked_values_and_gets_two_images(user, fake_fal, fake_cloudinary):
    preset = PresetFactory(kind="image_to_image", model_chain=[FLUX_GENERAL_I2I], prompt="{prompt}", num_images=2)
    generation = start_generation(user, preset, prompt="  a {curly} fox, as-is  ")

    run_worker(generation)

    assert generation.status == Generation.Status.SUCCEEDED
    [submission] = fake_fal.submissions(FLUX_GENERAL_I2I)
    body = submission.json
    assert body.pop("image_url").startswith("data:image/jpeg;base64,")
    assert body == {
        "prompt": "a {curly} fox, as-is",
        "num_images": 2,
        "strength": 0.5,
        "num_inference_steps": 7,
        "guidance_scale": 3.5,
        "enable_safety_checker": True,  # CONTRACT: sent wherever the schema has it
    }
    media = list(generation.media.order_by("index"))
    assert [m.index for m in media] == [0, 1]
    assert all(m.persisted for m in media)
    assert sorted(u["public_id"] for u in fake_cloudinary.uploads) == sorted(
        [result_name(generation.pk, 0), result_name(generation.pk, 1)]
    )


@pytest.mark.parametrize(
    "break_ghiblify",
    [
        pytest.param(lambda fal: fal.fail_submit(GHIBLIFY, status=500), id="http-500"),
        pytest.param(lambda fal: fal.error_on_completion(GHIBLIFY, message="CUDA out of memory"), id="error-status"),
        pytest.param(lambda fal: fal.fail_submit(GHIBLIFY, status=422), id="http-422"),
        pytest.param(lambda fal: fal.set_result(GHIBLIFY, {"image": None}), id="no-image"),
    ],
)
def test_it_falls_back_from_ghiblify_to_realistic_vision(user, fake_fal, break_ghiblify):
    break_ghiblify(fake_fal)
    preset = PresetFactory(kind="ghibli_reaction", model_chain=CHAIN)
    generation = start_generation(user, preset)

    run_worker(generation)

    assert generation.status == Generation.Status.SUCCEEDED
    attempts = list(generation.attempts.order_by("position"))
    assert [(a.model, a.status) for a in attempts] == [
        (GHIBLIFY, Attempt.Status.FAILED),
        (REALISTIC_VISION, Attempt.Status.SUCCEEDED),
    ]
    assert attempts[0].error
    [media] = generation.media.all()
    assert media.model == REALISTIC_VISION and media.fal_job_id == attempts[1].fal_job_id
    # Realistic Vision is text-to-image on fal: it gets the prompt, not the photo.
    [rv] = fake_fal.submissions(REALISTIC_VISION)
    assert "image_url" not in rv.json and rv.json["prompt"] == generation.prompt_sent
    assert balance(user) == settings.DAILY_CREDITS - 2


def test_it_tries_fast_sdxl_when_the_first_two_fail(user, fake_fal):
    fake_fal.fail_submit(GHIBLIFY, status=503)
    fake_fal.error_on_completion(REALISTIC_VISION)
    preset = PresetFactory(kind="ghibli_reaction", model_chain=CHAIN)
    generation = start_generation(user, preset)

    run_worker(generation)

    assert generation.status == Generation.Status.SUCCEEDED
    assert [a.status for a in generation.attempts.order_by("position")] == ["failed", "failed", "succeeded"]
    assert generation.media.get().model == FAST_SDXL_I2I


def test_it_fails_and_refunds_once_when_every_model_fails(user, fake_fal):
    fake_fal.fail_submit(GHIBLIFY, status=500)
    fake_fal.error_on_completion(REALISTIC_VISION, message="model crashed")
    fake_fal.fail_submit(FAST_SDXL_I2I, status=422)
    preset = PresetFactory(kind="ghibli_reaction", model_chain=CHAIN)
    generation = start_generation(user, preset)

    run_worker(generation)
    run_worker()  # more rounds change nothing

    assert generation.status == Generation.Status.FAILED
    assert generation.error_code == "all_models_failed"
    assert "refunded" in generation.error_message
    assert [a.model for a in generation.attempts.order_by("position")] == CHAIN
    assert set(generation.attempts.values_list("status", flat=True)) == {"failed"}
    assert not generation.media.exists()
    assert CreditEntry.objects.filter(generation=generation, reason="refund").count() == 1
    assert balance(user) == settings.DAILY_CREDITS


def test_new_generations_are_started_together_and_each_submitted_once(user, fake_fal):
    from generation import services

    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generations = [start_generation(user, preset, prompt=f"harbour {n}") for n in range(4)]
    claimed = services.generation_claim_due(limit=10)
    # The owner cancels one after the worker claimed the batch, before it was started.
    services.generation_cancel(generation_id=generations[1].pk, user=user)

    for future in services.generation_poll_batch(generation_ids=claimed):
        future.result()

    assert len(fake_fal.submissions()) == 3
    for generation in generations:
        generation.refresh_from_db()
    assert [g.status for g in generations] == ["running", "canceled", "running", "running"]
    assert not generations[1].attempts.exists()
    for generation in (generations[0], generations[2], generations[3]):
        [attempt] = generation.attempts.all()
        assert attempt.status == Attempt.Status.QUEUED and attempt.fal_job_id
        assert generation.current_model == FAST_SDXL_I2I and generation.started_at
        assert attempt.payload == generation.request_payload and generation.request_payload["prompt"]
        assert [line["message"] for line in generation.logs][-1].startswith("Sent to")


def test_a_request_that_cannot_be_built_is_recorded_and_the_next_model_tried(user, fake_fal):
    from django.core.files.storage import default_storage

    preset = PresetFactory(model_chain=[FAST_SDXL_I2I, REALISTIC_VISION])
    generation = start_generation(user, preset)
    default_storage.delete(generation.source_image.name)  # the photo is gone: no image_url

    run_worker(generation)

    assert generation.status == Generation.Status.SUCCEEDED
    first, second = generation.attempts.order_by("position")
    assert first.status == Attempt.Status.FAILED and first.error.startswith("Could not build the request")
    assert second.model == REALISTIC_VISION and second.status == Attempt.Status.SUCCEEDED
    assert [r.path for r in fake_fal.submissions()] == [f"/{REALISTIC_VISION}"]


def test_each_job_gets_its_own_queue_position_in_one_round(user, fake_fal):
    fake_fal.manual = True
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    first, second, third = (start_generation(user, preset, prompt=f"harbour {n}") for n in range(3))
    run_worker(rounds=2)
    first_job = first.attempts.get().fal_job_id

    fake_fal.advance(first_job)  # 2 -> 1 for the first only
    fake_fal.advance(third.attempts.get().fal_job_id, steps=2)  # the third starts running
    run_worker(rounds=1)

    positions = {g.pk: g.queue_position for g in Generation.objects.filter(pk__in=[first.pk, second.pk, third.pk])}
    assert positions == {first.pk: 1, second.pk: 2, third.pk: None}
    assert third.attempts.get().status == Attempt.Status.RUNNING


def test_it_records_queue_position_and_logs_as_they_change(user, fake_fal):
    fake_fal.manual = True
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)

    run_worker(rounds=2)
    generation.refresh_from_db()
    assert generation.status == Generation.Status.RUNNING
    assert generation.queue_position == 2
    assert generation.attempts.get().status == Attempt.Status.QUEUED

    fake_fal.advance()
    run_worker(rounds=1)
    generation.refresh_from_db()
    assert generation.queue_position == 1

    fake_fal.advance()
    run_worker(rounds=1)
    generation.refresh_from_db()
    assert generation.queue_position is None
    assert generation.attempts.get().status == Attempt.Status.RUNNING
    messages = [line["message"] for line in generation.logs]
    assert "Loading model weights" in messages
    assert messages.count("Loading model weights") == 1

    run_worker(rounds=2)  # no new lines, no duplicates
    generation.refresh_from_db()
    assert [line["message"] for line in generation.logs].count("Loading model weights") == 1

    fake_fal.advance()
    run_worker(generation)
    assert generation.status == Generation.Status.SUCCEEDED


def test_a_rate_limited_submission_is_retried_on_the_same_model(user, fake_fal):
    fake_fal.fail_submit(FAST_SDXL_I2I, status=429, times=2)
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)

    # After a 429 nothing starts for a moment (services/schedule.py): the clock moves on.
    with time_machine.travel(timezone.now(), tick=False) as clock:
        for _ in range(5):
            run_worker(rounds=1)
            clock.shift(dt.timedelta(seconds=3))
        run_worker(generation)

    assert generation.status == Generation.Status.SUCCEEDED
    [attempt] = generation.attempts.all()
    assert attempt.status == Attempt.Status.SUCCEEDED
    assert len(fake_fal.submissions(FAST_SDXL_I2I)) >= 2


def test_a_queued_generation_is_submitted_once_however_often_it_is_pushed(user, fake_fal):
    from generation import services

    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)

    services.generation_submit(generation_id=generation.pk)
    services.generation_submit(generation_id=generation.pk)
    services.generation_poll_due(limit=10)

    assert len(fake_fal.submissions()) == 1
    assert generation.attempts.count() == 1


def test_an_attempt_past_its_time_bound_is_canceled_and_falls_over(user, fake_fal, settings):
    settings.FAL_ATTEMPT_TIMEOUT_SECONDS = 0
    fake_fal.stick_in_queue(GHIBLIFY)
    preset = PresetFactory(kind="ghibli_reaction", model_chain=[GHIBLIFY, FAST_SDXL_I2I])
    generation = start_generation(user, preset)

    run_worker(generation)

    assert generation.status == Generation.Status.SUCCEEDED
    first, second = generation.attempts.order_by("position")
    assert first.status == "failed" and "Timed out" in first.error
    assert second.status == "succeeded"
    assert fake_fal.calls("PUT", f"/requests/{first.fal_job_id}/cancel")


def test_cancel_calls_fal_and_refunds(user, fake_fal):
    from generation import services

    fake_fal.manual = True
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)
    run_worker(rounds=1)
    attempt = generation.attempts.get()

    canceled = services.generation_cancel(generation_id=generation.pk, user=user)

    assert canceled.status == Generation.Status.CANCELED
    assert fake_fal.calls("PUT", f"/requests/{attempt.fal_job_id}/cancel")
    assert balance(user) == settings.DAILY_CREDITS
    fake_fal.complete_all()
    run_worker()
    canceled.refresh_from_db()
    assert canceled.status == Generation.Status.CANCELED
    assert not canceled.media.exists()
    assert CreditEntry.objects.filter(generation=generation, reason__in=["refund", "capture"]).count() == 1
