"""POST /api/generations: multipart and JSON uploads, every refusal at no cost, idempotency,
rate limits and authentication."""

from __future__ import annotations

import base64
import json

import pytest
from django.test import Client

from credits import ledger
from credits.models import CreditEntry
from credits.selectors import balance_of
from generation import services
from generation.models import Attempt, Generation
from generation.tests.pipeline_helpers import run_worker
from presets.tests.factories import PresetFactory
from stefna.accounts.services import api_token_create, api_token_revoke
from tests.images import make_image_bytes, make_jpeg, make_png

from .api_support import (
    GENERATION_KEYS,
    assert_error,
    assert_nothing_charged_or_stored,
    data_uri,
    photo,
    stored_files,
)

URL = "/api/generations"


@pytest.fixture
def style(db):
    return PresetFactory(slug="oil", prompt="an oil painting, {prompt}", requires_prompt=False)


@pytest.fixture
def prompted_style(db):
    return PresetFactory(slug="say-it", prompt="{prompt}", requires_prompt=True)


def post_json(client, body, **headers):
    return client.post(URL, data=json.dumps(body), content_type="application/json", **headers)


# --- Success -------------------------------------------------------------------------------


def test_it_starts_a_generation_from_a_multipart_upload(api_client, user, style):
    response = api_client.post(URL, {"image": photo(), "preset": "oil", "prompt": " a harbour ", "is_public": "true"})

    assert response.status_code == 202, response.content
    body = response.json()
    assert set(body) == GENERATION_KEYS
    generation = Generation.objects.get()
    assert body["id"] == str(generation.pk)
    assert body["status"] == "queued"
    assert (body["preset"], body["kind"], body["cost"]) == ("oil", "preset", 2)
    assert body["prompt"] == "a harbour"
    assert body["debug_info"] == {"prompt_sent": "an oil painting, a harbour", "original_prompt": "a harbour"}
    assert body["remaining_coins"] == 28 == balance_of(user=user)
    assert body["images"] == [] and body["attempts"] == [] and body["error"] is None
    assert body["logs"][0]["message"] == "Queued"
    assert generation.is_public is True
    assert len(stored_files()) == 1
    assert CreditEntry.objects.filter(user=user, reason=CreditEntry.Reason.RESERVE, generation=generation).count() == 1


@pytest.mark.parametrize("encode", [data_uri, lambda data: base64.b64encode(data).decode()], ids=["data-uri", "bare"])
def test_it_starts_a_generation_from_json_base64(api_client, user, style, encode):
    response = post_json(api_client, {"image_base64": encode(make_png()), "preset": "oil", "prompt": "boats"})

    assert response.status_code == 202, response.content
    generation = Generation.objects.get()
    assert generation.source_image.name.endswith(".png")
    assert (generation.source_width, generation.source_height) == (640, 480)
    assert response.json()["remaining_coins"] == 28


def test_it_answers_with_the_generation_the_detail_route_returns(api_client, style):
    created = api_client.post(URL, {"image": photo(), "preset": "oil"}).json()

    detail = api_client.get(f"{URL}/{created['id']}").json()

    assert detail == created


# --- Refusals cost nothing -------------------------------------------------------------------


@pytest.fixture
def funded(user):
    """The user with today's allowance applied, so 'balance unchanged' is a real check."""
    ledger.ensure_daily_allowance(user=user)
    return balance_of(user=user)


def test_it_refuses_a_file_that_is_not_an_image(api_client, user, style, funded):
    response = api_client.post(URL, {"image": photo(b"GIF89a not really", name="cat.jpg"), "preset": "oil"})

    assert_error(response, 415, "unsupported_image")
    assert_nothing_charged_or_stored(user, balance_before=funded)


def test_it_refuses_an_unsupported_format_whatever_its_name(api_client, user, style, funded):
    gif = make_image_bytes(64, 64, format="GIF")
    response = api_client.post(URL, {"image": photo(gif, name="photo.jpg"), "preset": "oil"})

    assert_error(response, 415, "unsupported_image")
    assert_nothing_charged_or_stored(user, balance_before=funded)


def test_it_refuses_an_image_over_the_size_limit(api_client, user, style, funded, settings):
    settings.MAX_UPLOAD_BYTES = 2_000
    big = make_image_bytes(400, 400, format="PNG")
    assert len(big) > 2_000

    response = api_client.post(URL, {"image": photo(big, name="big.png"), "preset": "oil"})

    body = assert_error(response, 413, "image_too_large")
    assert body["detail"] == {"max_bytes": 2_000}
    assert_nothing_charged_or_stored(user, balance_before=funded)


def test_it_refuses_a_base64_image_over_the_size_limit(api_client, user, style, funded, settings):
    settings.MAX_UPLOAD_BYTES = 2_000

    response = post_json(api_client, {"image_base64": data_uri(make_png(400, 400)), "preset": "oil"})

    assert_error(response, 413, "image_too_large")
    assert_nothing_charged_or_stored(user, balance_before=funded)


def test_a_body_over_djangos_limit_is_image_too_large_not_a_400(api_client, user, style, funded, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000

    response = post_json(api_client, {"image_base64": data_uri(make_jpeg()), "preset": "oil"})

    assert_error(response, 413, "image_too_large")
    assert_nothing_charged_or_stored(user, balance_before=funded)


def test_a_multipart_body_far_over_the_limit_is_refused_from_its_length(api_client, user, style, funded, settings):
    settings.MAX_UPLOAD_BYTES = 1_000
    padding = b"\0" * (1024 * 1024 + 10_000)

    response = api_client.post(URL, {"image": photo(make_jpeg() + padding), "preset": "oil"})

    assert_error(response, 413, "image_too_large")
    assert_nothing_charged_or_stored(user, balance_before=funded)


def test_it_refuses_an_image_with_too_many_pixels(api_client, user, style, funded, settings):
    settings.MAX_IMAGE_PIXELS = 100 * 100

    response = api_client.post(URL, {"image": photo(make_jpeg(200, 200)), "preset": "oil"})

    body = assert_error(response, 413, "image_too_large")
    assert body["detail"]["max_pixels"] == 10_000
    assert_nothing_charged_or_stored(user, balance_before=funded)


def test_it_refuses_a_prompt_over_the_length_limit(api_client, user, style, funded, settings):
    settings.MAX_PROMPT_CHARS = 50

    response = api_client.post(URL, {"image": photo(), "preset": "oil", "prompt": "x" * 51})

    body = assert_error(response, 422, "invalid_input")
    assert body["detail"]["field"] == "prompt"
    assert_nothing_charged_or_stored(user, balance_before=funded)


def test_it_refuses_an_empty_prompt_when_the_preset_needs_one(api_client, user, prompted_style, funded):
    response = api_client.post(URL, {"image": photo(), "preset": "say-it", "prompt": "   "})

    assert assert_error(response, 422, "invalid_input")["detail"]["field"] == "prompt"
    assert_nothing_charged_or_stored(user, balance_before=funded)


# A NUL reached the query and was a 500 on PostgreSQL (as schemathesis found for packs).
@pytest.mark.parametrize("slug", ["no-such-style", "retired", "ghibli\x00tears"])
def test_it_refuses_an_unknown_or_inactive_preset(api_client, user, funded, slug):
    PresetFactory(slug="retired", is_active=False)

    response = api_client.post(URL, {"image": photo(), "preset": slug})

    assert assert_error(response, 422, "invalid_input")["detail"]["field"] == "preset"
    assert_nothing_charged_or_stored(user, balance_before=funded)


def test_it_refuses_when_credits_run_out(api_client, user, style):
    ledger.ensure_daily_allowance(user=user)
    ledger.grant(user=user, amount=-29, reason=CreditEntry.Reason.ADJUST, note="test: leave 1 credit")

    response = api_client.post(URL, {"image": photo(), "preset": "oil"})

    body = assert_error(response, 402, "insufficient_credits")
    assert body["detail"]["balance"] == 1
    assert_nothing_charged_or_stored(user, balance_before=1)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        ("{not json", "application/json"),
        ("[1, 2]", "application/json"),
        (json.dumps({"preset": "oil"}), "application/json"),
        (json.dumps({"image_base64": "!!!not base64!!!", "preset": "oil"}), "application/json"),
        (json.dumps({"image_base64": "data:image/png,abc", "preset": "oil"}), "application/json"),
        (json.dumps({"image_base64": "aGk=", "preset": "oil", "is_public": "maybe"}), "application/json"),
        ("preset=oil", "application/x-www-form-urlencoded"),
        ("--x\r\ngarbage", "multipart/form-data"),
        ("--x\r\ngarbage", "multipart/form-data; boundary="),
        ("hello", "text/plain"),
    ],
    ids=[
        "malformed",
        "not-an-object",
        "no-image",
        "bad-base64",
        "uri-not-base64",
        "bad-bool",
        "urlencoded",
        "multipart-no-boundary",
        "multipart-empty-boundary",
        "text",
    ],
)
def test_it_refuses_malformed_bodies_with_invalid_input(api_client, user, style, funded, body, content_type):
    response = api_client.post(URL, data=body, content_type=content_type)

    assert_error(response, 422, "invalid_input")
    assert_nothing_charged_or_stored(user, balance_before=funded)


def test_it_refuses_a_multipart_request_without_the_image_file(api_client, user, style, funded):
    response = api_client.post(URL, {"preset": "oil", "image": "just text"})

    assert assert_error(response, 422, "invalid_input")["detail"] == {"field": "image"}
    assert_nothing_charged_or_stored(user, balance_before=funded)


# --- Idempotency ---------------------------------------------------------------------------


def test_the_same_idempotency_key_and_request_returns_the_first_generation_without_a_second_charge(
    api_client, user, style, django_capture_on_commit_callbacks
):
    image = make_jpeg()
    with django_capture_on_commit_callbacks(execute=True):
        first = api_client.post(URL, {"image": photo(image), "preset": "oil"}, HTTP_IDEMPOTENCY_KEY="k-1")
    with django_capture_on_commit_callbacks(execute=True):
        again = api_client.post(URL, {"image": photo(image), "preset": "oil"}, HTTP_IDEMPOTENCY_KEY="k-1")

    assert (first.status_code, again.status_code) == (202, 202)
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert Generation.objects.count() == 1
    assert CreditEntry.objects.filter(user=user, reason=CreditEntry.Reason.RESERVE).count() == 1
    assert balance_of(user=user) == 28
    assert len(stored_files()) == 1
    # One job for the worker: its round submits once.
    services.generation_poll_due(limit=10)
    assert Attempt.objects.count() == 1


def test_a_replayed_request_reaches_fal_once_and_is_charged_once(api_client, user, style, fake_fal):
    image = make_jpeg()
    first = api_client.post(URL, {"image": photo(image), "preset": "oil"}, HTTP_IDEMPOTENCY_KEY="k-fal")
    generation = Generation.objects.get(pk=first.json()["id"])
    run_worker(generation)
    # The client retries (it never saw the answer, say) after the work is done.
    again = api_client.post(URL, {"image": photo(image), "preset": "oil"}, HTTP_IDEMPOTENCY_KEY="k-fal")
    run_worker()

    assert again.status_code == 202 and again.headers["Idempotent-Replayed"] == "true"
    body = again.json()
    assert (body["id"], body["status"]) == (str(generation.pk), "succeeded")
    assert len(fake_fal.submissions()) == 1
    [attempt] = body["attempts"]
    assert attempt["fal_job_id"] and body["images"][0]["fal_job_id"] == attempt["fal_job_id"]
    assert CreditEntry.objects.filter(user=user, reason=CreditEntry.Reason.RESERVE).count() == 1
    assert CreditEntry.objects.filter(user=user, reason=CreditEntry.Reason.CAPTURE).count() == 1
    assert body["remaining_coins"] == 28


def test_the_same_key_with_the_same_request_in_json_is_also_a_replay(api_client, style):
    body = {"image_base64": data_uri(make_jpeg()), "preset": "oil", "prompt": "p"}
    first = post_json(api_client, body, HTTP_IDEMPOTENCY_KEY="json-key")
    again = post_json(api_client, body, HTTP_IDEMPOTENCY_KEY="json-key")

    assert (first.status_code, again.status_code) == (202, 202)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]


@pytest.mark.parametrize(
    "change",
    [{"prompt": "something else"}, {"is_public": "true"}, {"preset": "other"}, {"image": "other"}, {"notify": "true"}],
)
def test_the_same_key_with_a_different_request_is_a_conflict(api_client, user, style, change):
    PresetFactory(slug="other")
    request = {"preset": "oil", "prompt": "harbour"}
    first = api_client.post(URL, {"image": photo(), **request}, HTTP_IDEMPOTENCY_KEY="k-2")
    different = {**request, **change}
    different["image"] = photo(make_png() if change.get("image") else make_jpeg())

    response = api_client.post(URL, different, HTTP_IDEMPOTENCY_KEY="k-2")

    body = assert_error(response, 409, "idempotency_conflict")
    assert body["detail"] == {"generation_id": first.json()["id"]}
    assert Generation.objects.count() == 1
    assert CreditEntry.objects.filter(user=user, reason=CreditEntry.Reason.RESERVE).count() == 1


def test_idempotency_keys_belong_to_one_user(api_client, other_user, style):
    first = api_client.post(URL, {"image": photo(), "preset": "oil"}, HTTP_IDEMPOTENCY_KEY="shared")
    _, other_token = api_token_create(user=other_user)

    response = Client().post(
        URL,
        {"image": photo(), "preset": "oil"},
        HTTP_IDEMPOTENCY_KEY="shared",
        HTTP_AUTHORIZATION=f"Bearer {other_token}",
    )

    assert response.status_code == 202
    assert response.json()["id"] != first.json()["id"]


def test_an_idempotency_key_longer_than_200_characters_is_invalid(api_client, style):
    response = api_client.post(URL, {"image": photo(), "preset": "oil"}, HTTP_IDEMPOTENCY_KEY="k" * 201)

    assert_error(response, 422, "invalid_input")
    assert Generation.objects.count() == 0


# --- Rate limit ----------------------------------------------------------------------------


@pytest.mark.usefixtures("clear_of_rate_window_end")
def test_generation_starts_are_rate_limited_per_user(api_client, other_user, style, settings):
    settings.RATE_LIMIT_GENERATIONS = (2, 60)
    for _ in range(2):
        assert api_client.post(URL, {"image": photo(), "preset": "oil"}).status_code == 202

    response = api_client.post(URL, {"image": photo(), "preset": "oil"})

    body = assert_error(response, 429, "rate_limited")
    assert 1 <= int(response["Retry-After"]) <= 60
    assert body["detail"]["retry_after"] == int(response["Retry-After"])
    assert Generation.objects.count() == 2
    # Another user is counted separately.
    _, other_token = api_token_create(user=other_user)
    other = Client(HTTP_AUTHORIZATION=f"Bearer {other_token}")
    assert other.post(URL, {"image": photo(), "preset": "oil"}).status_code == 202


# --- Authentication ------------------------------------------------------------------------


def test_without_credentials_it_is_401_with_the_error_body(client, style):
    assert_error(client.post(URL, {"image": photo(), "preset": "oil"}), 401, "unauthorized")
    assert_error(client.get(URL), 401, "unauthorized")
    assert Generation.objects.count() == 0


@pytest.mark.parametrize("header", ["Bearer stf_wrong", "Bearer ", "Token abc", "Basic Zm9vOmJhcg=="])
def test_a_wrong_token_is_401_on_reads_and_writes(db, style, header):
    # A real browser client checks CSRF; a bad token must still be told 401, not 403.
    client = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=header)

    assert_error(client.get(URL), 401, "unauthorized")
    assert_error(client.post(URL, {"image": photo(), "preset": "oil"}), 401, "unauthorized")


def test_a_revoked_token_is_401(user, api_token, style):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert client.get(URL).status_code == 200
    token_row = user.api_tokens.get()
    assert api_token_revoke(user=user, token_id=token_row.pk)

    assert_error(client.get(URL), 401, "unauthorized")


def test_a_token_of_a_deactivated_user_is_401(user, api_token):
    user.is_active = False
    user.save()

    assert_error(Client(HTTP_AUTHORIZATION=f"Bearer {api_token}").get(URL), 401, "unauthorized")


def test_a_valid_token_needs_no_csrf_token(user, api_token, style):
    client = Client(enforce_csrf_checks=True, HTTP_AUTHORIZATION=f"Bearer {api_token}")

    assert client.post(URL, {"image": photo(), "preset": "oil"}).status_code == 202


def test_a_session_write_needs_the_csrf_token(user, style):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.get(URL).status_code == 200

    refused = client.post(URL, {"image": photo(), "preset": "oil"})
    assert_error(refused, 403, "forbidden")
    assert Generation.objects.count() == 0

    csrf_token = _set_csrf_cookie(client)
    accepted = client.post(URL, {"image": photo(), "preset": "oil"}, HTTP_X_CSRFTOKEN=csrf_token)
    assert accepted.status_code == 202, accepted.content


def _set_csrf_cookie(client: Client) -> str:
    """What a browser holds after any page: the CSRF cookie, and the masked token to send."""
    from django.middleware.csrf import get_token
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    token = get_token(request)  # the masked token a page embeds; the secret goes in the cookie
    client.cookies["csrftoken"] = request.META["CSRF_COOKIE"]
    return token


@pytest.mark.parametrize("field", ["prompt", "preset", "image_base64"])
def test_half_a_surrogate_pair_in_json_is_refused_at_no_cost(api_client, user, style, funded, field):
    # JSON may spell a lone surrogate ("\ud800"); no database can store one (the prompt's
    # insert was a 500).
    body = {"image_base64": data_uri(make_jpeg()), "preset": "oil", "prompt": "p"}
    raw = json.dumps(body).replace(f'"{field}": "', f'"{field}": "\\ud800', 1)
    response = api_client.post(URL, data=raw, content_type="application/json")

    assert response.status_code in (415, 422), response.content
    assert response.json()["code"] in ("invalid_input", "unsupported_image")
    assert_nothing_charged_or_stored(user, balance_before=funded)


def test_a_surrogate_pair_is_text_like_any_other(api_client, style):
    raw = json.dumps({"image_base64": data_uri(make_jpeg()), "preset": "oil", "prompt": "a 🦊 at dusk"})
    assert "\\ud83e\\udd8a" in raw  # the emoji as an escaped pair, which JSON readers join
    response = api_client.post(URL, data=raw, content_type="application/json")
    assert response.status_code == 202, response.content
    assert response.json()["prompt"] == "a 🦊 at dusk"


def test_a_request_without_notify_keeps_the_fingerprint_it_had_before_notify_counted():
    # A client retrying across the deploy that made `notify` count must still be replayed.
    import hashlib

    from generation.services.request import _fingerprint

    before = hashlib.sha256(json.dumps(["oil", "harbour", False, "ab12"]).encode()).hexdigest()
    assert (
        _fingerprint(preset_slug="oil", prompt="harbour", is_public=False, image_sha256="ab12", notify=False) == before
    )
    assert (
        _fingerprint(preset_slug="oil", prompt="harbour", is_public=False, image_sha256="ab12", notify=True) != before
    )
