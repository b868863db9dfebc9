"""POST /api/generations/{id}/cancel: cancels queued/running work and refunds it, once."""

from __future__ import annotations

from credits.models import CreditEntry
from credits.selectors import balance_of
from generation.models import Generation
from generation.tests.factories import GenerationFactory
from presets.tests.factories import PresetFactory

from .api_support import GENERATION_KEYS, assert_error, photo


def start(api_client) -> str:
    PresetFactory(slug="oil")
    response = api_client.post("/api/generations", {"image": photo(), "preset": "oil"})
    assert response.status_code == 202
    return response.json()["id"]


def test_cancelling_a_queued_generation_refunds_it(api_client, user):
    generation_id = start(api_client)
    assert balance_of(user=user) == 28

    response = api_client.post(f"/api/generations/{generation_id}/cancel")

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == GENERATION_KEYS
    assert body["status"] == "canceled"
    assert body["remaining_coins"] == 30 == balance_of(user=user)
    assert body["error"]["code"] == "canceled"
    assert CreditEntry.objects.filter(generation_id=generation_id, reason=CreditEntry.Reason.REFUND).count() == 1


def test_cancelling_twice_is_a_conflict_and_refunds_once(api_client, user):
    generation_id = start(api_client)
    api_client.post(f"/api/generations/{generation_id}/cancel")

    response = api_client.post(f"/api/generations/{generation_id}/cancel")

    assert_error(response, 409, "invalid_state")
    assert balance_of(user=user) == 30
    assert CreditEntry.objects.filter(generation_id=generation_id, reason=CreditEntry.Reason.REFUND).count() == 1


def test_a_finished_generation_cannot_be_cancelled(api_client, user):
    done = GenerationFactory(user=user, status=Generation.Status.SUCCEEDED)

    assert_error(api_client.post(f"/api/generations/{done.pk}/cancel"), 409, "invalid_state")
    done.refresh_from_db()
    assert done.status == "succeeded"


def test_someone_elses_generation_is_404_and_stays_queued(api_client, other_user):
    theirs = GenerationFactory(user=other_user, status=Generation.Status.QUEUED, completed_at=None)

    assert_error(api_client.post(f"/api/generations/{theirs.pk}/cancel"), 404, "not_found")
    theirs.refresh_from_db()
    assert theirs.status == "queued"


def test_cancel_needs_credentials(client, user):
    queued = GenerationFactory(user=user, status=Generation.Status.QUEUED, completed_at=None)

    assert_error(client.post(f"/api/generations/{queued.pk}/cancel"), 401, "unauthorized")
