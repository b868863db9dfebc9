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

from credits.models import CreditEntry
from credits.selectors import balance_of
from generation import services, status_thread
from generation.models import Generation
from generation.registry import FLUX_GENERAL_I2I
from generation.storage import result_name
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
    yield
    # The status poller keeps its connection between polls; PostgreSQL cannot drop the
    # test database while it is open.
    status_thread.generation_status_close_connection()


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


class PipelineWorker(threading.Thread):
    """The real pipeline (the worker's poller rounds) on another thread with its own DB
    connection, against the fake fal: what `db_worker` does while the view waits."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                services.generation_poll_due(limit=50)
                time.sleep(0.02)
        finally:
            connection.close()

    def __enter__(self) -> PipelineWorker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self.join(10)
        close_old_connections()


@pytest.mark.django_db(transaction=True)
def test_it_waits_for_the_result_and_answers_with_the_image_urls(api_client, user, studio, settings, fake_fal):
    settings.GENERATE_IMAGE_WAIT_SECONDS = 20

    with PipelineWorker():
        response = api_client.post(URL, {"image": photo(), "prompt": "  a {curly} fox  "})

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == STUDIO_KEYS
    generation = Generation.objects.get()
    assert generation.status == "succeeded"
    assert body["generation_id"] == str(generation.pk)
    # Stored locally (no Cloudinary here), so the API makes the addresses absolute.
    assert body["images"] == [
        f"http://testserver{settings.MEDIA_URL}generated/{result_name(generation.pk, index)}.png" for index in (0, 1)
    ]
    assert body["remaining_coins"] == 28 == balance_of(user=user)
    assert body["debug_info"] == {"prompt_sent": "a {curly} fox", "original_prompt": "a {curly} fox"}
    [submission] = fake_fal.submissions(FLUX_GENERAL_I2I)
    assert submission.json["prompt"] == "a {curly} fox"
    assert generation.kind == "image_to_image" and generation.is_public is False


@pytest.mark.django_db(transaction=True)
def test_when_every_model_fails_it_is_a_502_with_the_id_and_a_refund(api_client, user, studio, settings, fake_fal):
    settings.GENERATE_IMAGE_WAIT_SECONDS = 20
    fake_fal.fail_submit(FLUX_GENERAL_I2I, status=422)

    with PipelineWorker():
        response = api_client.post(
            URL,
            data=json.dumps({"image_base64": data_uri(make_jpeg()), "prompt": "p"}),
            content_type="application/json",
        )

    body = assert_error(response, 502, "generation_failed")
    generation = Generation.objects.get()
    assert generation.status == "failed"
    assert body["detail"] == {"generation_id": str(generation.pk)}
    assert balance_of(user=user) == 30


@pytest.mark.django_db(transaction=True)
def test_when_the_bound_passes_it_answers_202_with_the_generation_id(api_client, user, studio, settings):
    settings.GENERATE_IMAGE_WAIT_SECONDS = 0.3
    started = time.monotonic()

    response = api_client.post(
        URL, data=json.dumps({"image_base64": data_uri(make_jpeg()), "prompt": "p"}), content_type="application/json"
    )

    # At least the bound; far below the 60 s default (generous: CI machines are busy).
    assert 0.3 <= time.monotonic() - started < 30
    assert response.status_code == 202, response.content
    body = response.json()
    generation = Generation.objects.get()
    assert body["generation_id"] == str(generation.pk)
    assert body["status"] == "queued"
    assert CreditEntry.objects.filter(user=user, reason=CreditEntry.Reason.RESERVE).count() == 1
    # The id works with the status route.
    assert api_client.get(f"/api/generations/{generation.pk}").json()["status"] == "queued"


def test_the_202_message_is_in_the_request_language(api_client, user, studio, settings):
    settings.GENERATE_IMAGE_WAIT_SECONDS = 0
    english = api_client.post(URL, {"image": photo(), "prompt": "p"})
    indonesian = api_client.post(URL, {"image": photo(), "prompt": "p"}, HTTP_ACCEPT_LANGUAGE="id")

    assert (english.status_code, indonesian.status_code) == (202, 202)
    assert english.json()["message"] == "Still working on it. Follow it with GET /api/generations/{id}."
    assert indonesian.json()["message"] == "Masih dikerjakan. Ikuti dengan GET /api/generations/{id}."


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
