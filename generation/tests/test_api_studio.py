"""POST /api/generate-image: the studio in one call, an async view that waits on the database.

These tests unset DJANGO_ALLOW_ASYNC_UNSAFE (pyproject sets it for the suite), so any ORM
call made directly on the event loop, including in authentication, fails loudly here.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from django.db import close_old_connections, connection
from django.test import Client
from django.utils import timezone

from credits.models import CreditEntry
from credits.selectors import balance_of
from generation.models import Generation, Media
from generation.registry import FLUX_GENERAL_I2I
from presets.models import Preset
from presets.tests.factories import PresetFactory
from tests.images import make_jpeg

from .api_support import assert_error, assert_nothing_charged_or_stored, data_uri, photo

URL = "/api/generate-image"
STUDIO_KEYS = {"generation_id", "images", "remaining_coins", "debug_info"}


@pytest.fixture(autouse=True)
def _strict_async(monkeypatch, settings):
    monkeypatch.delenv("DJANGO_ALLOW_ASYNC_UNSAFE", raising=False)
    settings.GENERATE_IMAGE_POLL_SECONDS = 0.05


@pytest.fixture
def studio(db):
    # The seeded preset when it exists (get_or_create by slug), else an equivalent one.
    return PresetFactory(
        slug="image_to_image",
        kind=Preset.Kind.IMAGE_TO_IMAGE,
        prompt="{prompt}",
        requires_prompt=True,
        model_chain=[FLUX_GENERAL_I2I],
        num_images=2,
    )


class FakeWorker(threading.Thread):
    """Plays the pipeline's part from another thread (its own DB connection): waits for the
    studio's generation to appear, then finishes it the way the worker would."""

    def __init__(self, *, outcome: str, delay: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.outcome, self.delay = outcome, delay

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 10
            generation = None
            while generation is None and time.monotonic() < deadline:
                generation = Generation.objects.filter(preset_slug="image_to_image").first()
                time.sleep(0.02)
            assert generation is not None
            time.sleep(self.delay)
            if self.outcome == "succeeded":
                for index in range(2):
                    Media.objects.create(
                        generation=generation,
                        user_id=generation.user_id,
                        index=index,
                        fal_job_id="req-1",
                        model=FLUX_GENERAL_I2I,
                        url=f"https://res.cloudinary.com/demo/image/upload/studio_{index}.jpg",
                        persisted=True,
                    )
                Generation.objects.filter(pk=generation.pk).update(status="succeeded", completed_at=timezone.now())
            else:
                Generation.objects.filter(pk=generation.pk).update(
                    status=self.outcome, error_code="all_models_failed", completed_at=timezone.now()
                )
        finally:
            connection.close()


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_it_waits_for_the_result_and_answers_with_the_image_urls(api_client, user, studio, settings):
    settings.GENERATE_IMAGE_WAIT_SECONDS = 10
    worker = FakeWorker(outcome="succeeded")
    worker.start()

    response = api_client.post(URL, {"image": photo(), "prompt": "make it snow"})
    worker.join(5)
    close_old_connections()

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == STUDIO_KEYS
    generation = Generation.objects.get()
    assert body["generation_id"] == str(generation.pk)
    assert body["images"] == [
        "https://res.cloudinary.com/demo/image/upload/studio_0.jpg",
        "https://res.cloudinary.com/demo/image/upload/studio_1.jpg",
    ]
    assert body["remaining_coins"] == 28 == balance_of(user=user)
    assert body["debug_info"] == {"prompt_sent": "make it snow", "original_prompt": "make it snow"}
    assert generation.kind == "image_to_image" and generation.is_public is False


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_generation_that_fails_while_waiting_is_a_502_with_its_id(api_client, studio, settings):
    settings.GENERATE_IMAGE_WAIT_SECONDS = 10
    worker = FakeWorker(outcome="failed")
    worker.start()

    response = api_client.post(
        URL, data=json.dumps({"image_base64": data_uri(make_jpeg()), "prompt": "p"}), content_type="application/json"
    )
    worker.join(5)

    body = assert_error(response, 502, "generation_failed")
    assert body["detail"] == {"generation_id": str(Generation.objects.get().pk)}


def test_when_the_bound_passes_it_answers_202_with_the_generation_id(api_client, user, studio, settings):
    settings.GENERATE_IMAGE_WAIT_SECONDS = 0.3
    started = time.monotonic()

    response = api_client.post(
        URL, data=json.dumps({"image_base64": data_uri(make_jpeg()), "prompt": "p"}), content_type="application/json"
    )

    assert 0.3 <= time.monotonic() - started < 5
    assert response.status_code == 202, response.content
    body = response.json()
    generation = Generation.objects.get()
    assert body["generation_id"] == str(generation.pk)
    assert body["status"] == "queued"
    assert CreditEntry.objects.filter(user=user, reason=CreditEntry.Reason.RESERVE).count() == 1
    # The id works with the status route.
    assert api_client.get(f"/api/generations/{generation.pk}").json()["status"] == "queued"


def test_an_idempotent_replay_returns_the_same_generation(api_client, user, studio, settings):
    settings.GENERATE_IMAGE_WAIT_SECONDS = 0
    image = make_jpeg()

    first = api_client.post(URL, {"image": photo(image), "prompt": "p"}, HTTP_IDEMPOTENCY_KEY="studio-1")
    again = api_client.post(URL, {"image": photo(image), "prompt": "p"}, HTTP_IDEMPOTENCY_KEY="studio-1")
    conflict = api_client.post(URL, {"image": photo(image), "prompt": "q"}, HTTP_IDEMPOTENCY_KEY="studio-1")

    assert first.json()["generation_id"] == again.json()["generation_id"]
    assert_error(conflict, 409, "idempotency_conflict")
    assert Generation.objects.count() == 1


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code"),
    [
        ({"data": {"prompt": "p", "image": "text"}}, 422, "invalid_input"),
        ({"data": {"prompt": "", "image": "IMAGE"}}, 422, "invalid_input"),
        ({"data": {"prompt": "p", "image": "NOT_AN_IMAGE"}}, 415, "unsupported_image"),
        ({"data": '{"prompt": "p"}', "content_type": "application/json"}, 422, "invalid_input"),
        ({"data": "{oops", "content_type": "application/json"}, 422, "invalid_input"),
    ],
    ids=["no-file", "empty-prompt", "not-an-image", "json-without-image", "malformed-json"],
)
def test_refusals_cost_nothing(api_client, user, studio, request_kwargs, status, code):
    data = request_kwargs["data"]
    if isinstance(data, dict) and data.get("image") == "IMAGE":
        data["image"] = photo()
    if isinstance(data, dict) and data.get("image") == "NOT_AN_IMAGE":
        data["image"] = photo(b"%PDF-1.4 nope", name="photo.jpg")

    response = api_client.post(URL, **request_kwargs)

    assert_error(response, status, code)
    assert_nothing_charged_or_stored(user, balance_before=0)


def test_it_needs_credentials_and_says_so_in_json(db, studio):
    assert_error(Client().post(URL, {"image": photo(), "prompt": "p"}), 401, "unauthorized")
    assert_error(
        Client(HTTP_AUTHORIZATION="Bearer stf_nope").post(URL, {"image": photo(), "prompt": "p"}), 401, "unauthorized"
    )
    assert Generation.objects.count() == 0


def test_a_session_works_too_and_needs_csrf(user, studio, settings):
    settings.GENERATE_IMAGE_WAIT_SECONDS = 0
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    assert_error(client.post(URL, {"image": photo(), "prompt": "p"}), 403, "forbidden")

    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

    secret = _get_new_csrf_string()
    client.cookies["csrftoken"] = secret
    response = client.post(URL, {"image": photo(), "prompt": "p"}, HTTP_X_CSRFTOKEN=_mask_cipher_secret(secret))
    assert response.status_code == 202, response.content
