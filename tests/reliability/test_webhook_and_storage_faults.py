"""fal's webhook lost, repeated, out of order with the poller, or forged; Cloudinary failing,
slow or refusing our signature. The generation still ends right, the ledger stays clean,
and an image that existed keeps a working address (fal's) until our copy exists."""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client

from generation import services
from generation.models import Attempt, Generation, Media
from generation.registry import FAST_SDXL_I2I

from .conftest import assert_failed_and_refunded, assert_succeeded, entries, run_worker, start

pytestmark = pytest.mark.django_db
WEBHOOK = "/api/fal/webhook"


@pytest.fixture
def webhooks_on(settings, fake_fal):
    settings.FAL_WEBHOOK_BASE_URL = "http://testserver"
    return fake_fal


def deliver(fake_fal, request_id: str, **options) -> tuple[int, dict]:
    body, headers = fake_fal.webhook_request(request_id, **options)
    response = Client().post(WEBHOOK, data=body, content_type="application/json", headers=headers)
    return response.status_code, response.json()


def finished_job(fake_fal, generation) -> str:
    """The generation's job at fal, completed there (manual mode)."""
    attempt = Attempt.objects.get(generation=generation)
    assert attempt.fal_job_id
    fake_fal.advance(attempt.fal_job_id, steps=3)
    return attempt.fal_job_id


# --- Webhooks ------------------------------------------------------------------------------


def test_every_submission_asks_for_the_webhook(user, funded, webhooks_on, one_model_style):
    start(user, one_model_style)

    (submission,) = webhooks_on.submissions()
    assert submission.query["fal_webhook"] == ["http://testserver/api/fal/webhook"]


def test_a_webhook_that_never_arrives_is_covered_by_the_poller(user, funded, webhooks_on, one_model_style):
    generation = run_worker(start(user, one_model_style))

    assert_succeeded(user, generation, funded=funded)
    assert webhooks_on.webhook_deliveries == []


def test_a_webhook_delivered_twice_completes_once_and_charges_once(user, funded, webhooks_on, one_model_style):
    webhooks_on.manual = True
    generation = start(user, one_model_style)
    request_id = finished_job(webhooks_on, generation)

    first = deliver(webhooks_on, request_id)
    second = deliver(webhooks_on, request_id)
    generation = run_worker(generation)

    assert first == (200, {"status": "completed"})
    assert second == (200, {"status": "duplicate"})
    (media,) = assert_succeeded(user, generation, funded=funded)
    assert media.fal_job_id == request_id


def test_a_late_error_webhook_after_success_changes_nothing(user, funded, webhooks_on, one_model_style):
    webhooks_on.manual = True
    generation = start(user, one_model_style)
    request_id = finished_job(webhooks_on, generation)
    assert deliver(webhooks_on, request_id) == (200, {"status": "completed"})

    late_error = deliver(webhooks_on, request_id, status="ERROR")
    generation = run_worker(generation)

    assert late_error == (200, {"status": "duplicate"})
    assert_succeeded(user, generation, funded=funded)


def test_the_poller_finishing_first_makes_the_webhook_a_duplicate(user, funded, webhooks_on, one_model_style):
    generation = run_worker(start(user, one_model_style))
    request_id = Attempt.objects.get(generation=generation).fal_job_id

    late = [deliver(webhooks_on, request_id), deliver(webhooks_on, request_id, status="ERROR")]

    assert late == [(200, {"status": "duplicate"})] * 2
    assert_succeeded(user, generation, funded=funded)
    assert Media.objects.filter(generation=generation).count() == 1


def test_the_webhook_arriving_between_poller_rounds_is_applied_once(user, funded, webhooks_on, one_model_style):
    """The poller sees COMPLETED, the webhook lands, the poller goes on: one result, one charge."""
    webhooks_on.manual = True
    generation = start(user, one_model_style)
    request_id = finished_job(webhooks_on, generation)

    def webhook_midway(round_number: int) -> None:
        if round_number == 0:
            deliver(webhooks_on, request_id)

    generation = run_worker(generation, between=webhook_midway)

    assert_succeeded(user, generation, funded=funded)
    assert Media.objects.filter(generation=generation).count() == 1


def test_an_error_webhook_fails_the_attempt_and_the_generation_is_refunded(user, funded, webhooks_on, one_model_style):
    webhooks_on.manual = True
    webhooks_on.error_on_completion(FAST_SDXL_I2I, message="NSFW content detected")
    generation = start(user, one_model_style)
    request_id = finished_job(webhooks_on, generation)

    assert deliver(webhooks_on, request_id) == (200, {"status": "failed"})
    generation = run_worker(generation)

    assert_failed_and_refunded(user, generation, funded=funded)
    assert deliver(webhooks_on, request_id, status="OK") == (200, {"status": "duplicate"})
    assert not Media.objects.filter(generation=generation).exists()


# --- Webhook security ----------------------------------------------------------------------


def _refused(response, status: int = 401) -> None:
    assert response.status_code == status, response.content
    assert response.json()["code"] in ("unauthorized", "invalid_input")


@pytest.fixture
def running_job(user, funded, webhooks_on, one_model_style):
    webhooks_on.manual = True
    generation = start(user, one_model_style)
    return generation, finished_job(webhooks_on, generation)


def _unchanged(generation) -> None:
    generation.refresh_from_db()
    assert generation.status == Generation.Status.RUNNING
    assert not Media.objects.filter(generation=generation).exists()
    assert Attempt.objects.get(generation=generation).status in services.IN_FLIGHT


def test_an_unsigned_webhook_is_refused(running_job, webhooks_on):
    generation, request_id = running_job
    body, _ = webhooks_on.webhook_request(request_id)

    _refused(Client().post(WEBHOOK, data=body, content_type="application/json"))
    _unchanged(generation)


def test_a_webhook_signed_with_another_key_is_refused(running_job, webhooks_on):
    generation, request_id = running_job
    body, headers = webhooks_on.webhook_request(request_id, forge=True)

    _refused(Client().post(WEBHOOK, data=body, content_type="application/json", headers=headers))
    _unchanged(generation)


def test_a_replayed_old_webhook_is_refused(running_job, webhooks_on):
    generation, request_id = running_job
    body, headers = webhooks_on.webhook_request(request_id, timestamp=int(time.time()) - 600)

    _refused(Client().post(WEBHOOK, data=body, content_type="application/json", headers=headers))
    _unchanged(generation)


def test_a_signed_webhook_with_a_tampered_body_is_refused(running_job, webhooks_on):
    generation, request_id = running_job
    body, headers = webhooks_on.webhook_request(request_id)
    tampered = json.loads(body)
    tampered["payload"]["images"][0]["url"] = "https://evil.example/x.png"

    response = Client().post(
        WEBHOOK, data=json.dumps(tampered).encode(), content_type="application/json", headers=headers
    )

    _refused(response)
    _unchanged(generation)


def test_a_signature_for_one_job_cannot_complete_another(running_job, webhooks_on):
    generation, request_id = running_job
    body, headers = webhooks_on.webhook_request(request_id)
    other_body = json.loads(body)
    other_body["request_id"] = "someone-elses-job"
    resigned = json.dumps(other_body).encode()
    headers = webhooks_on.sign(resigned, request_id=request_id)

    response = Client().post(WEBHOOK, data=resigned, content_type="application/json", headers=headers)

    _refused(response, status=422)
    _unchanged(generation)


def test_a_validly_signed_webhook_for_an_unknown_job_changes_nothing(running_job, webhooks_on):
    generation, _ = running_job
    body = json.dumps({"request_id": "not-ours", "status": "OK", "payload": {"images": []}}).encode()
    headers = webhooks_on.sign(body, request_id="not-ours")

    response = Client().post(WEBHOOK, data=body, content_type="application/json", headers=headers)

    assert response.status_code == 200 and response.json() == {"status": "unknown"}
    _unchanged(generation)


# --- Cloudinary ----------------------------------------------------------------------------


def _finish_with_cloudinary_trouble(user, style, fake_cloudinary, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        generation = run_worker(start(user, style))
    return generation


@pytest.mark.parametrize(
    "trouble",
    ["http-500", "timeout", "invalid-signature"],
)
def test_cloudinary_trouble_keeps_fals_url_and_retries_later(
    user, funded, fake_fal, fake_cloudinary, one_model_style, settings, django_capture_on_commit_callbacks, trouble
):
    if trouble == "http-500":
        fake_cloudinary.fail_uploads(status=500)
    elif trouble == "timeout":
        settings.CLOUDINARY_TIMEOUT_SECONDS = 1
        fake_cloudinary.delay = 1.5
    else:
        fake_cloudinary.reject_signatures = True

    generation = _finish_with_cloudinary_trouble(
        user, one_model_style, fake_cloudinary, django_capture_on_commit_callbacks
    )

    # The user has the image now, at fal's address, and paid once for it.
    (media,) = assert_succeeded(user, generation, funded=funded)
    assert not media.persisted
    assert media.url == media.original_url and media.url.startswith(fake_fal.base_url)
    assert media.persist_error
    assert fake_cloudinary.api_secret not in media.persist_error
    retry = Media.objects.filter(persisted=False, persist_next_at__isnull=False)
    assert retry.count() == 1, "a retry is scheduled"

    # Cloudinary recovers; the retry task runs.
    fake_cloudinary.reset()
    settings.CLOUDINARY_TIMEOUT_SECONDS = 2
    services.media_persist(media_id=media.pk, reschedule=True)

    media.refresh_from_db()
    assert media.persisted
    assert media.url != media.original_url and media.storage_key.startswith("stefna/generated/")
    assert media.original_url.startswith(fake_fal.base_url), "fal's address is kept for the record"
    assert entries(generation, "capture") == 1


def test_a_cloudinary_failure_once_is_absorbed_by_the_retry(
    user, funded, fake_fal, fake_cloudinary, one_model_style, django_capture_on_commit_callbacks
):
    fake_cloudinary.fail_uploads(status=500, times=1)

    generation = _finish_with_cloudinary_trouble(
        user, one_model_style, fake_cloudinary, django_capture_on_commit_callbacks
    )
    (media,) = assert_succeeded(user, generation, funded=funded)
    services.media_persist(media_id=media.pk, reschedule=True)

    media.refresh_from_db()
    assert media.persisted and media.persist_error == ""
    assert len(fake_cloudinary.uploads) == 2
