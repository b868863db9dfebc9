"""Staff actions and owner cancel: generation_cancel, generation_retry, generation_refund, media_persist."""

from __future__ import annotations

import pytest
from django.conf import settings

from credits import ledger
from credits.exceptions import AlreadySettled, InsufficientCredits
from credits.models import CreditEntry
from generation import services
from generation.exceptions import InvalidTransition
from generation.models import Generation
from generation.registry import FAST_SDXL_I2I, GHIBLIFY
from generation.services.finish import Finished
from generation.tests.pipeline_helpers import balance, run_worker, start_generation
from presets.tests.factories import PresetFactory
from stefna.errors import NotFound

pytestmark = pytest.mark.django_db


@pytest.fixture
def failed_generation(user, fake_fal):
    fake_fal.fail_submit(GHIBLIFY, status=500, times=1)
    preset = PresetFactory(kind="ghibli_reaction", model_chain=[GHIBLIFY])
    generation = start_generation(user, preset)
    run_worker(generation)
    assert generation.status == Generation.Status.FAILED
    return generation


def test_retry_restarts_a_failed_generation_from_the_first_model_and_charges_again(user, failed_generation, fake_fal):
    assert balance(user) == settings.DAILY_CREDITS

    retried = services.generation_retry(generation_id=failed_generation.pk)

    assert retried.status == Generation.Status.QUEUED and not retried.error_code
    assert balance(user) == settings.DAILY_CREDITS - 2
    run_worker(retried)
    assert retried.status == Generation.Status.SUCCEEDED
    assert [a.status for a in retried.attempts.order_by("started_at")] == ["failed", "succeeded"]
    reasons = list(CreditEntry.objects.filter(generation=retried).order_by("id").values_list("reason", flat=True))
    assert reasons == ["reserve", "refund", "reserve", "capture"]


def test_retry_refuses_a_succeeded_or_active_generation(user, fake_fal):
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)
    with pytest.raises(InvalidTransition):
        services.generation_retry(generation_id=generation.pk)
    run_worker(generation)
    with pytest.raises(InvalidTransition):
        services.generation_retry(generation_id=generation.pk)


def test_retry_needs_credits(user, failed_generation):
    ledger.grant(user=user, amount=-balance(user), reason="adjust", note="broke")

    with pytest.raises(InsufficientCredits):
        services.generation_retry(generation_id=failed_generation.pk)

    failed_generation.refresh_from_db()
    assert failed_generation.status == Generation.Status.FAILED


def test_refund_stops_an_active_generation_and_refunds_once(user, fake_fal):
    fake_fal.manual = True
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)
    run_worker(rounds=1)
    attempt = generation.attempts.get()

    entry = services.generation_refund(generation_id=generation.pk)

    assert entry.reason == "refund" and entry.amount == 2
    generation.refresh_from_db()
    assert generation.status == Generation.Status.FAILED and generation.error_code == "refunded_by_staff"
    assert fake_fal.calls("PUT", f"/requests/{attempt.fal_job_id}/cancel")
    assert balance(user) == settings.DAILY_CREDITS
    with pytest.raises(AlreadySettled):
        services.generation_refund(generation_id=generation.pk)


def test_refund_refuses_a_captured_generation(user, fake_fal):
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)
    run_worker(generation)

    with pytest.raises(AlreadySettled):
        services.generation_refund(generation_id=generation.pk)


def test_only_the_owner_or_staff_can_cancel(user, other_user, fake_fal):
    fake_fal.manual = True
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)

    with pytest.raises(NotFound):
        services.generation_cancel(generation_id=generation.pk, user=other_user)

    canceled = services.generation_cancel(generation_id=generation.pk)  # staff
    assert canceled.status == Generation.Status.CANCELED
    assert canceled.error_message == "Canceled by staff"
    with pytest.raises(InvalidTransition):
        services.generation_cancel(generation_id=generation.pk, user=user)
    assert CreditEntry.objects.filter(generation=generation, reason="refund").count() == 1


def test_canceling_a_queued_generation_never_reaches_fal(user, fake_fal):
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)

    services.generation_cancel(generation_id=generation.pk, user=user)
    services.generation_submit(generation_id=generation.pk)  # a late push changes nothing
    run_worker()

    assert fake_fal.submissions() == []
    assert balance(user) == settings.DAILY_CREDITS


def test_media_persist_saves_now(user, fake_fal, fake_cloudinary):
    fake_cloudinary.fail_uploads(status=500)
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)
    run_worker(generation)
    media = generation.media.get()
    assert not media.persisted
    fake_cloudinary.reset()

    saved = services.media_persist(media_id=media.pk)

    assert saved.persisted and saved.url == f"/images/{saved.storage_key}"
    with pytest.raises(NotFound):
        services.media_persist(media_id="00000000-0000-0000-0000-000000000000")


def test_a_result_held_from_before_a_cancel_never_finishes_the_staff_retry(client, user, fake_fal):
    # fal's webhook stored the first run's answer; a worker copied it and holds it until
    # its next round. Meanwhile the owner cancels (refunded) and staff retry (charged
    # again), and the retry is at fal. What the worker held belongs to the canceled run:
    # recording it must neither finish the retry (with images the cancel deleted, charged,
    # the retry's job left running at fal) nor touch it.
    fake_fal.manual = True
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))
    run_worker(rounds=1)
    first = generation.attempts.get()
    fake_fal.advance(first.fal_job_id, steps=3)
    body, headers = fake_fal.webhook_request(first.fal_job_id)
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "Content-Type"}
    assert client.post("/api/fal/webhook", data=body, content_type="application/json", **extra).json() == {
        "status": "completed"
    }
    [held] = [
        future.result()
        for future in services.generation_poll_batch(generation_ids=services.generation_claim_due(limit=10))
    ]
    assert isinstance(held, Finished) and held.kept

    services.generation_cancel(generation_id=generation.pk, user=user)
    services.generation_retry(generation_id=generation.pk)
    run_worker(rounds=1)
    second = generation.attempts.exclude(pk=first.pk).get()
    assert second.fal_job_id

    services.generations_finish(finished=[held])  # the worker's next round

    generation.refresh_from_db()
    assert generation.status == Generation.Status.RUNNING
    assert not CreditEntry.objects.filter(generation=generation, reason="capture").exists()
    fake_fal.advance(second.fal_job_id, steps=3)
    run_worker(generation)
    assert generation.status == Generation.Status.SUCCEEDED
    assert list(generation.media.values_list("fal_job_id", flat=True)) == [second.fal_job_id]
    assert CreditEntry.objects.filter(generation=generation, reason="capture").count() == 1
    assert balance(user) == settings.DAILY_CREDITS - 2
