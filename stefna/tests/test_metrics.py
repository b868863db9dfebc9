"""/metrics: who may read it, and the series it exposes (read from the database)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from credits import ledger
from generation.models import Attempt, Generation
from generation.tests.factories import AttemptFactory, GenerationFactory, MediaFactory

pytestmark = pytest.mark.django_db


def samples(response) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    families = text_string_to_metric_families(response.content.decode())
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in families
        for sample in family.samples
    }


def test_anonymous_callers_are_refused(client):
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"
    assert "stefna_" not in response.content.decode()


def test_signed_in_users_who_are_not_staff_are_refused(client, user):
    client.force_login(user)
    response = client.get("/metrics")
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"


def test_a_wrong_token_is_refused_and_no_token_configured_refuses_every_bearer(client, settings):
    settings.METRICS_TOKEN = "the-real-token"
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-it").status_code == 403
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 403


def test_an_api_token_of_a_user_is_not_a_metrics_token(client, api_token, settings):
    settings.METRICS_TOKEN = "the-real-token"
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {api_token}").status_code == 403


def test_the_metrics_token_and_staff_sessions_may_read(client, staff_client, settings):
    settings.METRICS_TOKEN = "the-real-token"
    by_token = client.get("/metrics", HTTP_AUTHORIZATION="Bearer the-real-token")
    assert by_token.status_code == 200
    assert by_token["Content-Type"].startswith("text/plain")
    assert staff_client.get("/metrics").status_code == 200


def test_it_exposes_the_named_series_from_the_database(staff_client, user):
    now = timezone.now()
    done = GenerationFactory(user=user, current_model="fal-ai/flux/dev")
    attempt = AttemptFactory(generation=done, model="fal-ai/flux/dev", finished_at=now)
    # started_at is auto_now_add: an update sets the 8 s an attempt at fal took.
    Attempt.objects.filter(pk=attempt.pk).update(started_at=now - dt.timedelta(seconds=8))
    MediaFactory(generation=done, persist_attempts=3)
    MediaFactory(generation=done, persisted=False, persist_attempts=1)
    GenerationFactory(user=user, status=Generation.Status.FAILED, current_model="fal-ai/flux/dev")
    waiting = GenerationFactory(
        user=user, status=Generation.Status.QUEUED, completed_at=None, next_check_at=now - dt.timedelta(seconds=30)
    )
    ledger.reserve(user=user, generation=waiting, amount=2, new_generation=True)
    refunded = GenerationFactory(user=user, status=Generation.Status.FAILED, current_model="fal-ai/flux/dev")
    ledger.reserve(user=user, generation=refunded, amount=2, new_generation=True)
    ledger.refund(generation=refunded)
    # A request before the scrape, so the request counters have a sample.
    staff_client.get("/healthz")

    found = samples(staff_client.get("/metrics"))

    preset = done.preset_slug
    assert (
        found[("stefna_generations_total", (("model", "fal-ai/flux/dev"), ("preset", preset), ("status", "succeeded")))]
        == 1
    )
    assert found[("stefna_generation_queue_depth", (("status", "queued"),))] == 1
    assert found[("stefna_generation_oldest_due_seconds", ())] >= 30
    assert ("stefna_task_queue_depth", ()) in found
    assert ("stefna_task_oldest_due_seconds", ()) in found
    histogram = {
        labels: value for (name, labels), value in found.items() if name == "stefna_fal_attempt_duration_seconds_bucket"
    }
    assert histogram[(("le", "5.0"), ("model", "fal-ai/flux/dev"))] == 0
    assert histogram[(("le", "10.0"), ("model", "fal-ai/flux/dev"))] == 1
    assert found[("stefna_fal_attempt_duration_seconds_sum", (("model", "fal-ai/flux/dev"),))] == pytest.approx(
        8, abs=0.5
    )
    assert (
        found[("stefna_fal_attempts_total", (("model", "fal-ai/flux/dev"), ("status", Attempt.Status.SUCCEEDED)))] == 1
    )
    assert found[("stefna_media_persist_retries_total", ())] == 2
    assert found[("stefna_media_unpersisted", ())] == 1
    # One reservation still held, one given back: 2 credits spent.
    assert found[("stefna_credits_spent_total", ())] == 2
    assert found[("stefna_credits_bought_total", ())] == 0
    assert found[("stefna_credit_entries_total", (("reason", "refund"),))] == 1
    assert found[("stefna_http_requests_total", (("method", "GET"), ("route", "healthz"), ("status", "200")))] >= 1
    assert any(name == "stefna_http_request_duration_seconds_bucket" for name, _ in found)


def test_unknown_paths_share_one_route_label(staff_client):
    staff_client.get("/no/such/page/12345")
    found = samples(staff_client.get("/metrics"))
    routes = {dict(labels).get("route") for name, labels in found if name == "stefna_http_requests_total"}
    assert "unmatched" in routes
    assert not any(route and "12345" in route for route in routes)


def test_it_counts_storage_work_still_owed(staff_client):
    from generation.models import Media, StoredRemoval

    MediaFactory()  # nothing owed
    owing = MediaFactory(storage_key="generated/old.png")
    Media.objects.filter(pk=owing.pk).update(move_to="generated/new.png", move_next_at=timezone.now())
    for key in ("stefna/generated/a", "stefna/generated/b"):
        StoredRemoval.objects.create(where="cloudinary", key=key, reason="image_deleted", next_at=timezone.now())

    found = samples(staff_client.get("/metrics"))

    assert found[("stefna_media_moves_owed", ())] == 1
    assert found[("stefna_storage_removals_owed", ())] == 2
