"""Races: two real workers over one queue, requests racing for the last credits, and fal's
webhook landing while the poller finishes the same job. Each thing happens once and the
ledger stays clean.

The thread races need PostgreSQL's row locks to be meaningful (SQLite serialises every
writer, so nothing would overlap) and are reported as skipped there.
"""

from __future__ import annotations

import base64
import json
import threading

import pytest
from django.db import connection
from django.test import Client

from credits import ledger
from credits.models import CreditEntry
from credits.reconcile import find_ledger_problems
from credits.selectors import balance_of
from generation import services
from generation.images import validate_image
from generation.models import Attempt, Generation, Media
from stefna.accounts.services import api_token_create
from tests.images import make_jpeg

from .conftest import entries, wait_for

pytestmark = [pytest.mark.django_db(transaction=True)]


def _postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip(
            "PostgreSQL only: SQLite runs one writing transaction at a time (BEGIN IMMEDIATE), so the "
            "threads below could never overlap and the race would not be exercised"
        )


def _run_together(count: int, work) -> list:  # type: ignore[no-untyped-def]
    """Run `work(n)` in `count` threads released at the same instant; their results in order."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(number: int) -> None:
        try:
            barrier.wait(10)
            results[number] = work(number)
        except Exception as exc:  # reported by the test, not lost in a thread
            results[number] = exc
        finally:
            connection.close()  # each thread has its own connection; leave none open

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


@pytest.mark.slow
def test_two_workers_share_a_queue_without_submitting_any_job_twice(user, funded, fake_fal, one_model_style, workers):
    fake_fal.set_latency(0.3)
    image = validate_image(make_jpeg(96, 64))
    generations = [
        services.generation_request(user=user, preset_slug=one_model_style.slug, image=image, prompt=f"n{n}")[0]
        for n in range(8)
    ]
    first, second = workers(), workers()

    wait_for(
        lambda: not Generation.objects.filter(status__in=Generation.ACTIVE_STATUSES).exists(),
        timeout=60,
        what="both workers to finish the queue",
        worker=first,
    )

    assert second.process.poll() is None
    assert Generation.objects.filter(status="succeeded").count() == len(generations)
    assert len(fake_fal.submissions()) == len(generations), "one fal submission per generation"
    assert Attempt.objects.count() == len(generations)
    assert Media.objects.count() == len(generations)
    assert find_ledger_problems(users=[user]) == []
    assert balance_of(user=user) == funded - 2 * len(generations)


@pytest.mark.postgres_only
def test_requests_racing_for_the_last_credits_never_overspend(user, one_model_style):
    _postgres_only()
    ledger.ensure_daily_allowance(user=user)
    spare = balance_of(user=user) - 6  # leave exactly three generations' worth
    ledger.grant(user=user, amount=-spare, reason=CreditEntry.Reason.ADJUST, note="test: three left")
    _, token = api_token_create(user=user, name="race")
    body = json.dumps(
        {"image_base64": base64.b64encode(make_jpeg(64, 48)).decode(), "preset": one_model_style.slug, "prompt": "x"}
    )

    def start(number: int) -> int:
        client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client.post("/api/generations", data=body, content_type="application/json").status_code

    statuses = _run_together(8, start)

    assert sorted(statuses) == [202] * 3 + [402] * 5, statuses
    assert balance_of(user=user) == 0
    assert Generation.objects.filter(user=user).count() == 3
    assert find_ledger_problems(users=[user]) == []


@pytest.mark.postgres_only
def test_webhook_and_poller_finishing_one_job_at_the_same_instant_apply_it_once(
    user, funded, fake_fal, one_model_style, settings
):
    _postgres_only()
    settings.FAL_WEBHOOK_BASE_URL = "http://testserver"
    fake_fal.manual = True
    generation, _ = services.generation_request(
        user=user, preset_slug=one_model_style.slug, image=validate_image(make_jpeg(96, 64)), prompt="race"
    )
    services.generation_poll_due(limit=10)  # submitted
    attempt = Attempt.objects.get(generation=generation)
    fake_fal.advance(attempt.fal_job_id, steps=3)
    body, headers = fake_fal.webhook_request(attempt.fal_job_id)
    Generation.objects.filter(pk=generation.pk).update(next_check_at=None)

    def contender(number: int) -> object:
        if number % 2:
            return Client().post("/api/fal/webhook", data=body, content_type="application/json", headers=headers).json()
        Generation.objects.filter(pk=generation.pk).update(next_check_at="2000-01-01T00:00:00Z")
        return services.generation_poll_due(limit=10)

    results = _run_together(6, contender)
    assert not [result for result in results if isinstance(result, Exception)], results
    for _ in range(5):  # whatever is left (a webhook only records the result; a poll saves it)
        Generation.objects.filter(pk=generation.pk, status__in=Generation.ACTIVE_STATUSES).update(
            next_check_at="2000-01-01T00:00:00Z"
        )
        services.generation_poll_due(limit=10)

    generation.refresh_from_db()
    assert generation.status == "succeeded"
    assert Media.objects.filter(generation=generation).count() == 1
    assert entries(generation, CreditEntry.Reason.CAPTURE) == 1
    assert find_ledger_problems(users=[user]) == []
    assert len(fake_fal.submissions()) == 1


@pytest.mark.postgres_only
def test_a_cancel_racing_the_finish_either_charges_or_refunds_never_both(user, funded, fake_fal, one_model_style):
    _postgres_only()
    fake_fal.manual = True
    generation, _ = services.generation_request(
        user=user, preset_slug=one_model_style.slug, image=validate_image(make_jpeg(96, 64)), prompt="race"
    )
    services.generation_poll_due(limit=10)
    fake_fal.advance(Attempt.objects.get(generation=generation).fal_job_id, steps=3)
    _, token = api_token_create(user=user, name="cancel race")

    def contender(number: int) -> object:
        if number % 2:
            client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
            return client.post(f"/api/generations/{generation.pk}/cancel").status_code
        Generation.objects.filter(pk=generation.pk).update(next_check_at="2000-01-01T00:00:00Z")
        return services.generation_poll_due(limit=10)

    results = _run_together(6, contender)
    assert not [result for result in results if isinstance(result, Exception)], results
    for _ in range(5):
        Generation.objects.filter(pk=generation.pk, status__in=Generation.ACTIVE_STATUSES).update(
            next_check_at="2000-01-01T00:00:00Z"
        )
        services.generation_poll_due(limit=10)

    generation.refresh_from_db()
    assert find_ledger_problems(users=[user]) == []
    captured = entries(generation, CreditEntry.Reason.CAPTURE)
    refunded = entries(generation, CreditEntry.Reason.REFUND)
    assert (captured, refunded) in ((1, 0), (0, 1))
    if generation.status == "succeeded":
        assert captured == 1 and Media.objects.filter(generation=generation).count() == 1
        assert set(results[1::2]) <= {200, 409}
    else:
        assert generation.status == "canceled" and refunded == 1
        assert not Media.objects.filter(generation=generation).exists(), "no image kept for a refunded job"


@pytest.mark.postgres_only
def test_one_idempotency_key_sent_six_times_at_once_makes_one_generation_and_one_charge(user, funded, one_model_style):
    _postgres_only()
    _, token = api_token_create(user=user, name="idempotency race")
    body = json.dumps(
        {"image_base64": base64.b64encode(make_jpeg(64, 48)).decode(), "preset": one_model_style.slug, "prompt": "x"}
    )

    def start(number: int) -> tuple[int, str, bool]:
        client = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
        response = client.post(
            "/api/generations", data=body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="same-key-1"
        )
        replayed = response.headers.get("Idempotent-Replayed") == "true"
        return response.status_code, response.json().get("id", response.json().get("code")), replayed

    results = _run_together(6, start)

    assert not [result for result in results if isinstance(result, Exception)], results
    # Every one answers 202 (CONTRACT); all but the one that made it say they were replays.
    assert [status for status, _, _ in results] == [202] * 6, results
    assert sorted(replayed for _, _, replayed in results) == [False] + [True] * 5, results
    assert len({generation_id for _, generation_id, _ in results}) == 1
    assert Generation.objects.filter(user=user).count() == 1
    assert CreditEntry.objects.filter(user=user, reason=CreditEntry.Reason.RESERVE).count() == 1
    assert balance_of(user=user) == funded - 2
    assert find_ledger_problems(users=[user]) == []
