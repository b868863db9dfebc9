"""Crashes, duplicates, leases, the sweeper, unreachable fal and the worker command."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.conf import settings
from django.utils import timezone

from credits.models import CreditEntry
from generation import services
from generation.models import Attempt, Generation, WorkerHeartbeat
from generation.registry import FAST_SDXL_I2I, FLUX_GENERAL_I2I, GHIBLIFY
from generation.tests.pipeline_helpers import balance, run_worker, start_generation
from presets.tests.factories import PresetFactory

pytestmark = pytest.mark.django_db


def test_a_crash_after_fal_accepted_resumes_from_the_stored_request_id(user, fake_fal):
    fake_fal.manual = True
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)
    run_worker(rounds=1)
    attempt = generation.attempts.get()
    # The worker died right after storing fal's id: its claim is still on the row.
    Attempt.objects.filter(pk=attempt.pk).update(status=Attempt.Status.SUBMITTING)
    Generation.objects.filter(pk=generation.pk).update(next_check_at=timezone.now() + dt.timedelta(seconds=60))

    assert services.generation_poll_due() == 0  # the lease holds
    Generation.objects.filter(pk=generation.pk).update(next_check_at=timezone.now())  # the lease ran out
    fake_fal.complete_all()
    run_worker(generation)

    assert generation.status == Generation.Status.SUCCEEDED
    assert len(fake_fal.submissions()) == 1  # not paid for twice
    assert generation.media.get().fal_job_id == attempt.fal_job_id


def test_a_crash_before_fal_answered_resubmits_the_same_attempt(user, fake_fal):
    preset = PresetFactory(model_chain=[GHIBLIFY, FAST_SDXL_I2I])
    generation = start_generation(user, preset)
    Generation.objects.filter(pk=generation.pk).update(status=Generation.Status.RUNNING)
    attempt = Attempt.objects.create(generation=generation, position=0, model=GHIBLIFY)  # submitting, no id

    run_worker(generation)

    attempt.refresh_from_db()
    assert generation.status == Generation.Status.SUCCEEDED
    assert attempt.status == Attempt.Status.SUCCEEDED and attempt.fal_job_id
    assert generation.attempts.count() == 1


def test_an_unreachable_fal_is_retried_without_blocking(user, fake_fal):
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)
    fake_fal.refuse_connections()

    started = time.monotonic()
    run_worker(rounds=1)
    assert time.monotonic() - started < 5  # fal-client's retries are bounded

    attempt = generation.attempts.get()
    generation.refresh_from_db()
    assert attempt.status == Attempt.Status.SUBMITTING and "could not be reached" in attempt.error
    assert generation.next_check_at > timezone.now()  # backing off
    assert any("busy" in line["message"] for line in generation.logs)

    fake_fal.accept_connections()
    Generation.objects.filter(pk=generation.pk).update(next_check_at=timezone.now())
    run_worker(generation)
    assert generation.status == Generation.Status.SUCCEEDED


def test_the_payload_is_logged_with_the_prompt_and_without_the_key_or_the_photo(user, fake_fal, caplog):
    caplog.set_level("INFO", logger="generation")
    loras = [{"path": "https://example.com/ghibli.safetensors", "scale": 0.8}]
    preset = PresetFactory(kind="image_to_image", model_chain=[FLUX_GENERAL_I2I], prompt="{prompt}", loras=loras)
    generation = start_generation(user, preset, prompt="a lighthouse at dusk")

    run_worker(generation)

    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "prompt sent (20 chars): a lighthouse at dusk" in text
    assert '"strength": 0.5' in text and "chars)" in text
    assert "fake-key-secret" not in text
    assert len(max(text.splitlines(), key=len)) < 1000  # the data URI was shortened
    [submission] = fake_fal.submissions()
    assert submission.json["loras"] == [{"path": "https://example.com/ghibli.safetensors", "scale": 0.8}]
    generation.refresh_from_db()
    assert generation.request_payload["prompt"] == "a lighthouse at dusk"
    assert "chars)" in generation.request_payload["image_url"]
    assert generation.attempts.get().payload == generation.request_payload


def test_the_sweeper_fails_and_refunds_a_generation_stuck_for_too_long(user, fake_fal, settings):
    settings.FAL_ATTEMPT_TIMEOUT_SECONDS = 60
    fake_fal.stick_in_queue(FAST_SDXL_I2I)
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)
    run_worker(rounds=1)
    lost = start_generation(user, preset, prompt="never scheduled")
    Generation.objects.filter(pk=lost.pk).update(next_check_at=None)
    long_ago = timezone.now() - dt.timedelta(hours=2)
    Generation.objects.filter(pk=generation.pk).update(created_at=long_ago, started_at=long_ago)

    outcome = services.generation_sweep()

    generation.refresh_from_db()
    assert outcome == {"made_due": 1, "expired": 1}
    assert generation.status == Generation.Status.FAILED and generation.error_code == "timeout"
    attempt = generation.attempts.get()
    assert attempt.status == Attempt.Status.FAILED
    assert fake_fal.calls("PUT", f"/requests/{attempt.fal_job_id}/cancel")
    assert CreditEntry.objects.filter(generation=generation, reason="refund").count() == 1
    assert Generation.objects.get(pk=lost.pk).next_check_at is not None


def test_the_sweepers_clock_starts_at_fal_not_at_the_request(user, fake_fal, settings):
    """A job that waited its turn for a slot, or a staff retry of an old one, has used none
    of its time: it was failed and refunded without any model being asked."""
    settings.FAL_ATTEMPT_TIMEOUT_SECONDS = 60
    settings.FAL_MAX_CONCURRENT = 1
    fake_fal.stick_in_queue(FAST_SDXL_I2I)
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    running = start_generation(user, preset)
    run_worker(rounds=1)
    waiting = start_generation(user, preset, prompt="waiting for a slot")
    run_worker(rounds=1)
    retried = start_generation(user, preset, prompt="retried by staff")
    services.generation_cancel(generation_id=retried.pk, user=user)
    services.generation_retry(generation_id=retried.pk)
    long_ago = timezone.now() - dt.timedelta(hours=2)
    Generation.objects.filter(pk__in=[waiting.pk, retried.pk]).update(created_at=long_ago)
    Generation.objects.filter(pk=running.pk).update(created_at=long_ago)  # started just now

    outcome = services.generation_sweep()

    assert outcome["expired"] == 0
    statuses = dict(Generation.objects.filter(user=user).values_list("pk", "status"))
    assert statuses == {running.pk: "running", waiting.pk: "queued", retried.pk: "queued"}
    assert not waiting.attempts.exists()


def test_two_claimers_never_get_the_same_generation(user, fake_fal):
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    ids = {start_generation(user, preset, prompt=f"n{n}").pk for n in range(3)}

    first = services.generation_claim_due(limit=2)
    second = services.generation_claim_due(limit=10)

    assert len(first) == 2 and len(second) == 1
    assert set(first) | set(second) == ids
    assert services.generation_claim_due(limit=10) == []


@pytest.mark.django_db(transaction=True)
def test_the_workers_poller_submits_and_completes_a_new_generation(user, fake_fal):
    # (tests/reliability runs the whole `manage.py db_worker` process the same way.)
    from generation.worker import Poller

    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generation = start_generation(user, preset)  # commits: due for the poller at once

    poller = Poller(worker_id="test-worker", threads=2)
    poller.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            generation.refresh_from_db()
            if generation.is_final:
                break
            time.sleep(0.05)
    finally:
        poller.stop()
    assert generation.status == Generation.Status.SUCCEEDED
    assert len(fake_fal.submissions()) == 1
    assert generation.media.get().persisted
    assert balance(user) == settings.DAILY_CREDITS - 2
    assert WorkerHeartbeat.objects.filter(worker_id="test-worker").exists()
