"""fal misbehaving, through the fake fal's HTTPS queue API: errors on submit, status and result,
refused connections, a job stuck in the queue, result files already deleted.

Every case ends in a final state the user can read, with the ledger clean: charged once
for a delivered image, refunded once otherwise, and never charged for an image that
never arrived.
"""

from __future__ import annotations

import pytest
import time_machine
from django.utils import timezone

from credits.reconcile import find_ledger_problems
from generation.models import Attempt, Media
from generation.registry import FAST_SDXL_I2I, GHIBLIFY, REALISTIC_VISION

from .conftest import (
    age_attempts,
    assert_failed_and_refunded,
    assert_succeeded,
    run_worker,
    start,
)

pytestmark = pytest.mark.django_db


# --- Submission ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503])
def test_a_5xx_on_submit_falls_over_to_the_next_model(user, funded, fake_fal, two_model_style, status):
    fake_fal.fail_submit(GHIBLIFY, status=status)

    generation = run_worker(start(user, two_model_style))

    assert_succeeded(user, generation, funded=funded)
    assert [a.model for a in Attempt.objects.filter(generation=generation, status="failed")] == [GHIBLIFY]
    assert len(fake_fal.submissions(REALISTIC_VISION)) == 1


@pytest.mark.parametrize("status", [500, 503])
def test_a_5xx_on_every_model_fails_and_refunds_once_with_a_clear_message(
    user, funded, fake_fal, two_model_style, status
):
    fake_fal.fail_submit(GHIBLIFY, status=status)
    fake_fal.fail_submit(REALISTIC_VISION, status=status)

    generation = run_worker(start(user, two_model_style))

    body = assert_failed_and_refunded(user, generation, funded=funded)
    assert "refunded" in body["error"]["message"].lower()
    assert not fake_fal.jobs, "no job was ever accepted"


def test_a_429_on_submit_is_retried_on_the_same_model_and_charged_once(user, funded, fake_fal, one_model_style):
    fake_fal.fail_submit(FAST_SDXL_I2I, status=429, times=2)

    # After a 429 nothing new starts for a moment: the clock moves on between rounds.
    with time_machine.travel(timezone.now(), tick=False) as clock:
        generation = run_worker(start(user, one_model_style), between=lambda _: clock.shift(3))

    assert_succeeded(user, generation, funded=funded)
    assert len(fake_fal.jobs) == 1, "exactly one job at fal"
    (attempt,) = Attempt.objects.filter(generation=generation)
    assert attempt.model == FAST_SDXL_I2I and attempt.status == "succeeded"


def test_a_429_that_never_ends_times_out_and_refunds(user, funded, fake_fal, one_model_style, settings):
    settings.FAL_ATTEMPT_TIMEOUT_SECONDS = 60
    fake_fal.fail_submit(FAST_SDXL_I2I, status=429)

    def later(_: int) -> None:
        age_attempts(30)
        clock.shift(3)

    with time_machine.travel(timezone.now(), tick=False) as clock:
        generation = run_worker(start(user, one_model_style), between=later)

    assert_failed_and_refunded(user, generation, funded=funded)
    assert not fake_fal.jobs


def test_a_422_on_submit_is_permanent_and_falls_over(user, funded, fake_fal, two_model_style):
    fake_fal.fail_submit(GHIBLIFY, status=422)

    generation = run_worker(start(user, two_model_style))

    assert_succeeded(user, generation, funded=funded)
    assert len(fake_fal.submissions(GHIBLIFY)) == 1, "a 422 is not retried on the same model"


def test_a_422_on_the_only_model_fails_and_refunds(user, funded, fake_fal, one_model_style):
    fake_fal.fail_submit(FAST_SDXL_I2I, status=422)

    generation = run_worker(start(user, one_model_style))

    assert_failed_and_refunded(user, generation, funded=funded)


def test_connection_refused_is_retried_and_completes_when_fal_is_back(user, funded, fake_fal, one_model_style):
    fake_fal.refuse_connections()
    generation = start(user, one_model_style)
    run_worker(generation, rounds=2)
    assert generation.status == "running"
    assert Attempt.objects.get(generation=generation).status == "submitting"

    fake_fal.accept_connections()
    generation = run_worker(generation)

    assert_succeeded(user, generation, funded=funded)
    assert len(fake_fal.jobs) == 1


def test_connection_refused_past_the_bound_fails_and_refunds(user, funded, fake_fal, one_model_style, settings):
    settings.FAL_ATTEMPT_TIMEOUT_SECONDS = 60
    fake_fal.refuse_connections()

    def later(_: int) -> None:
        age_attempts(30)
        clock.shift(3)

    with time_machine.travel(timezone.now(), tick=False) as clock:
        generation = run_worker(start(user, one_model_style), between=later)

    assert_failed_and_refunded(user, generation, funded=funded)


# --- While the job runs ----------------------------------------------------------------------


def test_a_job_stuck_in_queue_past_the_bound_is_canceled_at_fal_and_refunded(
    user, funded, fake_fal, one_model_style, settings
):
    settings.FAL_ATTEMPT_TIMEOUT_SECONDS = 60
    fake_fal.stick_in_queue(FAST_SDXL_I2I)
    generation = start(user, one_model_style)
    run_worker(generation, rounds=3)
    assert generation.status == "running" and generation.queue_position is not None

    generation = run_worker(generation, between=lambda _: age_attempts(61))

    assert_failed_and_refunded(user, generation, funded=funded)
    (job,) = fake_fal.jobs.values()
    assert fake_fal.calls("PUT", f"/requests/{job.request_id}/cancel"), "the stuck job is canceled at fal"
    assert "Timed out" in Attempt.objects.get(generation=generation).error


def test_a_stuck_first_model_falls_over_to_the_second(user, funded, fake_fal, two_model_style, settings):
    settings.FAL_ATTEMPT_TIMEOUT_SECONDS = 60
    fake_fal.stick_in_queue(GHIBLIFY)
    generation = start(user, two_model_style)
    run_worker(generation, rounds=2)

    age_attempts(61)
    generation = run_worker(generation)

    assert_succeeded(user, generation, funded=funded)
    assert Media.objects.get(generation=generation).model == REALISTIC_VISION


def test_a_job_that_completes_with_an_error_falls_over_or_refunds(user, funded, fake_fal, one_model_style):
    fake_fal.error_on_completion(FAST_SDXL_I2I, message="CUDA out of memory")

    generation = run_worker(start(user, one_model_style))

    assert_failed_and_refunded(user, generation, funded=funded)
    assert "CUDA out of memory" in Attempt.objects.get(generation=generation).error


def test_a_result_without_images_is_not_charged(user, funded, fake_fal, one_model_style):
    fake_fal.set_result(FAST_SDXL_I2I, {"images": []})

    generation = run_worker(start(user, one_model_style))

    assert_failed_and_refunded(user, generation, funded=funded)
    assert not Media.objects.filter(generation=generation).exists()


@pytest.mark.parametrize("failing", ["status", "result"])
def test_one_5xx_while_following_a_finished_job_does_not_abandon_its_image(
    user, funded, fake_fal, one_model_style, failing
):
    """fal made the image; one hiccup on GET status/result must not throw it away (and pay
    for a second job on another model) or fail the generation."""
    generation = start(user, one_model_style)
    getattr(fake_fal, f"fail_{failing}")(FAST_SDXL_I2I, status=500, times=1)

    generation = run_worker(generation)

    assert_succeeded(user, generation, funded=funded)
    assert len(fake_fal.jobs) == 1, "the finished job was fetched, not redone"


# --- Results that are gone -------------------------------------------------------------------


def test_a_result_url_already_gone_is_never_charged_as_a_success(user, funded, fake_fal, one_model_style):
    """fal deletes results after about an hour. If the image is gone before we could keep a
    copy, the user must not pay for an image they can never see."""
    fake_fal.expire_files()

    generation = run_worker(start(user, one_model_style))

    generation.refresh_from_db()
    if generation.status == "succeeded":
        # Only acceptable if the user really has an image to look at.
        assert Media.objects.filter(generation=generation, persisted=True).exists(), (
            "charged for a generation whose only image is a dead fal URL"
        )
    else:
        assert_failed_and_refunded(user, generation, funded=funded)


def test_results_are_kept_on_our_side_so_expiry_later_loses_nothing(user, funded, fake_fal, one_model_style):
    generation = run_worker(start(user, one_model_style))
    (media,) = assert_succeeded(user, generation, funded=funded)
    assert media.persisted and media.url != media.original_url

    fake_fal.expire_files()  # an hour later

    from django.core.files.storage import default_storage

    assert media.storage_key and default_storage.exists(media.storage_key)
    with default_storage.open(media.storage_key, "rb") as stored:
        assert stored.read(4) == b"\x89PNG", "our copy is the image itself"


# --- Results that are not what they claim ----------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(document.cookie)", "data:text/html,<script>alert(1)</script>", "file:///etc/passwd"],
    ids=["javascript", "data-html", "file"],
)
def test_a_result_url_that_is_not_https_never_becomes_a_link(user, funded, fake_fal, one_model_style, url):
    """fal's answer is data from the network: only an http(s) image URL may reach our pages."""
    fake_fal.set_result(FAST_SDXL_I2I, {"images": [{"url": url, "width": 64, "height": 48}]})

    generation = run_worker(start(user, one_model_style))

    assert not Media.objects.filter(generation=generation, url=url).exists()
    from django.test import Client

    client = Client()
    client.force_login(user)
    page = client.get(f"/g/{generation.pk}/").content.decode()
    assert url not in page


def test_a_very_long_result_url_does_not_wedge_the_job(user, funded, fake_fal, one_model_style):
    long_url = f"{fake_fal.base_url}/files/{'a' * 1200}/0.png"
    fake_fal.set_result(FAST_SDXL_I2I, {"images": [{"url": long_url}]})

    generation = run_worker(start(user, one_model_style), rounds=10)

    assert generation.is_final, "a result that cannot be stored ends the job instead of retrying forever"
    assert find_ledger_problems(users=[user]) == []
