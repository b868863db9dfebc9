"""POST /api/fal/webhook: fal's signed completion callback."""

from __future__ import annotations

import json
import time

import pytest
from django.conf import settings

from credits.models import CreditEntry
from credits.reconcile import find_ledger_problems
from generation import services
from generation.models import Attempt, Generation
from generation.registry import FAST_SDXL_I2I, GHIBLIFY
from generation.services.check import fetch_status
from generation.tests.pipeline_helpers import balance, run_worker, start_generation
from presets.tests.factories import PresetFactory

pytestmark = pytest.mark.django_db

URL = "/api/fal/webhook"


def post(client, body: bytes, headers: dict[str, str]):
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "Content-Type"}
    return client.post(URL, data=body, content_type="application/json", **extra)


@pytest.fixture
def in_flight(user, fake_fal):
    """A generation whose attempt sits in fal's queue (manual mode) with a request id."""
    fake_fal.manual = True
    preset = PresetFactory(kind="ghibli_reaction", model_chain=[GHIBLIFY, FAST_SDXL_I2I])
    generation = start_generation(user, preset)
    run_worker(rounds=1)
    attempt = generation.attempts.get()
    assert attempt.status == Attempt.Status.QUEUED
    fake_fal.advance(attempt.fal_job_id, steps=3)  # done at fal
    return generation, attempt


def test_a_valid_webhook_completes_the_generation(client, fake_fal, in_flight, user):
    generation, attempt = in_flight
    body, headers = fake_fal.webhook_request(attempt.fal_job_id)

    response = post(client, body, headers)

    assert response.status_code == 200, response.content
    assert response.json() == {"status": "completed"}
    attempt.refresh_from_db()
    assert attempt.status == Attempt.Status.SUCCEEDED
    assert generation.media.get().original_url == json.loads(body)["payload"]["image"]["url"]
    status_checks_before = len(fake_fal.calls("GET", "/status"))
    run_worker(generation)  # the worker saves the image and settles
    assert generation.status == Generation.Status.SUCCEEDED
    assert generation.media.get().persisted
    assert len(fake_fal.calls("GET", "/status")) == status_checks_before  # no poll was needed
    assert CreditEntry.objects.filter(generation=generation, reason="capture").count() == 1


def test_a_duplicate_webhook_changes_nothing(client, fake_fal, in_flight):
    generation, attempt = in_flight
    body, headers = fake_fal.webhook_request(attempt.fal_job_id)
    assert post(client, body, headers).json() == {"status": "completed"}
    run_worker(generation)

    again = post(client, body, headers)
    late_error_body, late_error_headers = fake_fal.webhook_request(attempt.fal_job_id, status="ERROR")
    out_of_order = post(client, late_error_body, late_error_headers)

    assert again.status_code == 200 and again.json() == {"status": "duplicate"}
    assert out_of_order.json() == {"status": "duplicate"}
    generation.refresh_from_db()
    assert generation.status == Generation.Status.SUCCEEDED
    assert generation.media.count() == 1
    assert generation.attempts.count() == 1
    assert CreditEntry.objects.filter(generation=generation, reason__in=["capture", "refund"]).count() == 1


def test_an_error_webhook_falls_over_to_the_next_model(client, fake_fal, in_flight):
    generation, attempt = in_flight
    body, headers = fake_fal.webhook_request(attempt.fal_job_id, status="ERROR")

    response = post(client, body, headers)

    assert response.json() == {"status": "failed"}
    attempt.refresh_from_db()
    assert attempt.status == Attempt.Status.FAILED
    fake_fal.manual = False
    run_worker(generation)
    assert generation.status == Generation.Status.SUCCEEDED
    assert generation.media.get().model == FAST_SDXL_I2I


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda fal, rid: fal.webhook_request(rid, forge=True), id="forged-signature"),
        pytest.param(lambda fal, rid: fal.webhook_request(rid, timestamp=int(time.time()) - 301), id="stale"),
        pytest.param(lambda fal, rid: fal.webhook_request(rid, timestamp=int(time.time()) + 400), id="future"),
        pytest.param(
            lambda fal, rid: (
                fal.webhook_request(rid)[0].replace(b'"OK"', b'"ERROR"'),
                fal.webhook_request(rid)[1],
            ),
            id="body-changed",
        ),
        pytest.param(lambda fal, rid: (fal.webhook_request(rid)[0], {}), id="unsigned"),
    ],
)
def test_forged_or_stale_webhooks_get_401_and_change_nothing(client, fake_fal, in_flight, user, tamper):
    generation, attempt = in_flight
    body, headers = tamper(fake_fal, attempt.fal_job_id)

    response = post(client, body, headers)

    assert response.status_code == 401
    answer = response.json()
    assert answer["code"] == "unauthorized" and answer["message"] and "detail" in answer
    attempt.refresh_from_db()
    generation.refresh_from_db()
    assert attempt.status == Attempt.Status.QUEUED
    assert generation.status == Generation.Status.RUNNING
    assert not generation.media.exists()
    assert balance(user) == settings.DAILY_CREDITS - 2


def test_webhook_keys_are_fetched_once_and_cached(client, fake_fal, in_flight):
    generation, attempt = in_flight
    for _ in range(3):
        body, headers = fake_fal.webhook_request(attempt.fal_job_id)
        assert post(client, body, headers).status_code == 200
    assert len(fake_fal.calls("GET", "/.well-known/jwks.json")) == 1


def test_a_delivery_is_answered_503_while_fals_keys_cannot_be_fetched(client, fake_fal, in_flight, settings):
    """fal delivers again after a 5xx: the callback is neither trusted nor lost."""
    from tests.ports import free_port

    generation, attempt = in_flight
    working_url = settings.FAL_WEBHOOK_JWKS_URL
    settings.FAL_WEBHOOK_JWKS_URL = f"http://127.0.0.1:{free_port()}/.well-known/jwks.json"  # nothing listens
    body, headers = fake_fal.webhook_request(attempt.fal_job_id)

    response = post(client, body, headers)

    assert response.status_code == 503
    assert response.json()["code"] == "service_unavailable"  # the API's one code for a 503
    attempt.refresh_from_db()
    assert attempt.status == Attempt.Status.QUEUED
    settings.FAL_WEBHOOK_JWKS_URL = working_url
    assert post(client, body, headers).json() == {"status": "completed"}  # fal's next delivery


def test_a_webhook_for_an_unknown_request_is_acknowledged_and_ignored(client, fake_fal):
    body = json.dumps({"request_id": "nope", "status": "OK", "payload": {}}).encode()
    headers = fake_fal.sign(body, request_id="nope")

    response = post(client, body, headers)

    assert response.status_code == 200
    assert response.json() == {"status": "unknown"}


def test_submissions_carry_the_webhook_url_when_a_base_url_is_set(user, fake_fal, settings):
    settings.FAL_WEBHOOK_BASE_URL = "https://stefna.example"
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    start_generation(user, preset)

    run_worker(rounds=1)

    [submission] = fake_fal.submissions()
    assert submission.query["fal_webhook"] == ["https://stefna.example/api/fal/webhook"]


def test_fal_needs_no_csrf_token_or_session(fake_fal):
    from django.test import Client

    strict_client = Client(enforce_csrf_checks=True)
    body = json.dumps({"request_id": "req-1", "status": "OK", "payload": {}}).encode()

    response = post(strict_client, body, fake_fal.sign(body, request_id="req-1"))

    assert response.status_code == 200


def test_a_webhook_racing_a_status_check_finishes_the_job_once_in_one_round(client, fake_fal, in_flight, caplog):
    """The poller's check saw COMPLETED and copied the result; before that was recorded,
    the webhook stored the same answer and made the job due, and the next round copied
    it again. Both reach the same round's record: one success, one image, one capture,
    and the round's single transaction holds (no fall-back to one by one)."""
    generation, attempt = in_flight
    status = fetch_status(attempt)
    polled = services.apply_status(generation, attempt, status, finish_later=True)
    assert isinstance(polled, services.Finished)
    body, headers = fake_fal.webhook_request(attempt.fal_job_id)
    assert post(client, body, headers).json() == {"status": "completed"}
    assert services.generation_claim_due(limit=10) == [generation.pk]
    stored = services.generation_advance(generation_id=generation.pk)
    assert isinstance(stored, services.Finished)

    services.generations_finish(finished=[polled, stored])

    assert "together failed" not in caplog.text
    generation.refresh_from_db()
    assert generation.status == Generation.Status.SUCCEEDED
    media = generation.media.get()
    assert media.persisted and media.index == 0
    assert CreditEntry.objects.filter(generation=generation, reason="capture").count() == 1


@pytest.mark.parametrize("status", ["OK", "ERROR"])
def test_a_webhook_reads_none_of_the_generations_prompts_logs_or_payload(client, fake_fal, in_flight, status):
    """The callback loads its attempt with its generation, less what only the generation's
    own pages show; nothing it does later loads one of those columns on its own."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _generation, attempt = in_flight
    body, headers = fake_fal.webhook_request(attempt.fal_job_id, status=None if status == "OK" else "ERROR")

    with CaptureQueriesContext(connection) as queries:
        answer = post(client, body, headers)

    assert answer.json()["status"] in {"completed", "failed"}
    reads = [query["sql"] for query in queries.captured_queries if query["sql"].lstrip().startswith("SELECT")]
    generation_reads = [sql for sql in reads if '"generation_generation"' in sql]
    assert len(generation_reads) == 1, generation_reads  # the attempt with its generation, nothing lazy after
    for column in ("logs", "request_payload", "prompt_sent", "parameters"):
        assert f'"generation_generation"."{column}"' not in generation_reads[0]


def test_a_job_whose_stored_images_its_owner_deleted_before_the_copy_succeeds_and_is_charged(
    client, fake_fal, in_flight, user
):
    """The webhook stored the result (shown from fal's URLs) and the owner deleted it
    before the worker came to copy it: the job is done, not running until the sweeper
    fails it as a timeout. The images were delivered, so the credits are captured."""
    generation, attempt = in_flight
    body, headers = fake_fal.webhook_request(attempt.fal_job_id)
    assert post(client, body, headers).json() == {"status": "completed"}
    services.media_delete(user=user, media_id=generation.media.get().pk)

    services.generation_poll_due(limit=10)  # the worker's next round

    generation.refresh_from_db()
    assert generation.status == Generation.Status.SUCCEEDED and generation.next_check_at is None
    assert not generation.media.exists()
    assert CreditEntry.objects.filter(generation=generation, reason="capture").count() == 1
    assert not CreditEntry.objects.filter(generation=generation, reason="refund").exists()
    assert balance(user) == settings.DAILY_CREDITS - 2
    assert find_ledger_problems(users=[user]) == []


@pytest.mark.parametrize("path", ["webhook", "poll"])
def test_an_image_keeps_its_position_in_fal_s_answer_whichever_path_reads_it(client, fake_fal, user, path):
    # fal's answer with an entry we refuse first: the image we keep is fal's second, and
    # is numbered so (its number names its copy) whether the webhook or the poller reads it.
    fake_fal.set_result(
        FAST_SDXL_I2I,
        {"images": [{"url": "javascript:alert(1)"}, {"url": f"{fake_fal.base_url}/files/odd/1.png"}]},
    )
    fake_fal.manual = True
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))
    run_worker(rounds=1)
    attempt = generation.attempts.get()
    fake_fal.advance(attempt.fal_job_id, steps=3)
    if path == "webhook":
        body, headers = fake_fal.webhook_request(attempt.fal_job_id)
        assert post(client, body, headers).json() == {"status": "completed"}

    run_worker(generation)

    assert generation.status == Generation.Status.SUCCEEDED
    media = generation.media.get()
    assert media.index == 1 and media.persisted
    assert "finished: 1 image;" in json.dumps(generation.logs)
