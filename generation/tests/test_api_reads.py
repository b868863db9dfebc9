"""GET /api/generations[/{id}], GET /api/feed, PATCH/DELETE /api/media/{id}: shapes, owner
isolation (404, never 403), keyset pagination under inserts, and query counts."""

from __future__ import annotations

import base64
import datetime as dt
import uuid

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from credits import ledger
from generation.models import Generation, Media
from generation.tests.factories import AttemptFactory, GenerationFactory, MediaFactory

from .api_support import ATTEMPT_KEYS, GENERATION_KEYS, IMAGE_KEYS, assert_error

LIST_URL = "/api/generations"


def at(minutes_ago: int) -> dt.datetime:
    return timezone.now() - dt.timedelta(minutes=minutes_ago)


def make_generations(user, count: int, *, start_minutes_ago: int = 100) -> list[Generation]:
    """`count` generations for `user`, oldest first, one minute apart."""
    made = []
    for n in range(count):
        generation = GenerationFactory.create(user=user)
        Generation.objects.filter(pk=generation.pk).update(created_at=at(start_minutes_ago - n))
        made.append(generation)
    return made


def warm_up(api_client) -> None:
    # The first call with a fresh token stamps its last_used_at (one extra UPDATE, at
    # most once a minute); the query-count tests measure the steady state after it.
    api_client.get("/api/me")


# --- One generation ------------------------------------------------------------------------


def test_a_generation_answers_the_contract_shape(api_client, user):
    ledger.ensure_daily_allowance(user=user)
    generation = GenerationFactory(
        user=user,
        prompt="a quiet harbour",
        logs=[{"message": "Queued", "level": "info", "timestamp": "2026-01-01T00:00:00+00:00"}],
    )
    AttemptFactory(generation=generation, model="fal-ai/ghiblify", status="failed", error="HTTP 500")
    AttemptFactory(generation=generation, model="fal-ai/realistic-vision", fal_job_id="req-2")
    MediaFactory(generation=generation, index=0, fal_job_id="req-2", model="fal-ai/realistic-vision", is_public=True)
    MediaFactory(generation=generation, index=1, persisted=False, url="https://v3.fal.media/files/x/1.png")

    response = api_client.get(f"{LIST_URL}/{generation.pk}")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == GENERATION_KEYS
    assert body["status"] == "succeeded"
    assert body["remaining_coins"] == 30
    assert body["model"] == "fal-ai/realistic-vision"  # the last attempt's, as none is current
    assert [set(a) for a in body["attempts"]] == [ATTEMPT_KEYS, ATTEMPT_KEYS]
    assert [a["status"] for a in body["attempts"]] == ["failed", "succeeded"]
    assert body["attempts"][0]["error"] == "HTTP 500"
    assert [set(i) for i in body["images"]] == [IMAGE_KEYS, IMAGE_KEYS]
    first, second = body["images"]
    assert (first["fal_job_id"], first["persisted"], first["is_public"]) == ("req-2", True, True)
    assert second["persisted"] is False and second["url"].startswith("https://v3.fal.media/")
    assert body["logs"] == [{"message": "Queued", "level": "info", "timestamp": "2026-01-01T00:00:00+00:00"}]
    assert body["error"] is None
    assert body["debug_info"]["original_prompt"] == "a quiet harbour"


def test_a_failed_generation_carries_its_error(api_client, user):
    generation = GenerationFactory(
        user=user, status="failed", error_code="all_models_failed", error_message="Every model failed."
    )

    body = api_client.get(f"{LIST_URL}/{generation.pk}").json()

    assert body["error"] == {"code": "all_models_failed", "message": "Every model failed."}
    assert body["images"] == []


def test_a_running_generation_shows_its_queue_position_and_current_model(api_client, user):
    generation = GenerationFactory(
        user=user, status="running", queue_position=3, current_model="fal-ai/ghiblify", completed_at=None
    )

    body = api_client.get(f"{LIST_URL}/{generation.pk}").json()

    assert (body["status"], body["queue_position"], body["model"], body["completed_at"]) == (
        "running",
        3,
        "fal-ai/ghiblify",
        None,
    )


def test_locally_stored_images_get_absolute_urls(api_client, client, user):
    generation = GenerationFactory(user=user)
    MediaFactory(generation=generation, url="/media/generated/preset_1_0.png", is_public=True)

    detail = api_client.get(f"{LIST_URL}/{generation.pk}").json()
    feed = client.get("/api/feed").json()

    assert detail["images"][0]["url"] == "http://testserver/media/generated/preset_1_0.png"
    assert feed["items"][0]["url"] == "http://testserver/media/generated/preset_1_0.png"


def test_someone_elses_generation_is_404_not_403(api_client, other_user):
    theirs = GenerationFactory(user=other_user)

    assert_error(api_client.get(f"{LIST_URL}/{theirs.pk}"), 404, "not_found")
    assert_error(api_client.get(f"{LIST_URL}/{uuid.uuid4()}"), 404, "not_found")


def test_a_malformed_generation_id_is_invalid_input(api_client):
    assert_error(api_client.get(f"{LIST_URL}/not-a-uuid"), 422, "invalid_input")


def test_a_generation_status_costs_at_most_2_queries(api_client, user, django_assert_max_num_queries):
    generation = GenerationFactory(user=user)
    AttemptFactory.create_batch(3, generation=generation)
    MediaFactory.create_batch(2, generation=generation)
    warm_up(api_client)

    # auth (1) + the generation with the owner's balance, its images and attempts (1)
    with django_assert_max_num_queries(2):
        response = api_client.get(f"{LIST_URL}/{generation.pk}")
    assert response.status_code == 200


# --- History -------------------------------------------------------------------------------


def test_history_lists_only_the_callers_generations_newest_first(api_client, user, other_user):
    mine = make_generations(user, 3)
    make_generations(other_user, 2)

    body = api_client.get(LIST_URL).json()

    assert [item["id"] for item in body["items"]] == [str(g.pk) for g in reversed(mine)]
    assert body["next_cursor"] is None
    assert all(set(item) == GENERATION_KEYS for item in body["items"])


def test_history_filters_by_status(api_client, user):
    make_generations(user, 2)
    failed = GenerationFactory(user=user, status="failed")

    body = api_client.get(LIST_URL, {"status": "failed"}).json()

    assert [item["id"] for item in body["items"]] == [str(failed.pk)]
    assert_error(api_client.get(LIST_URL, {"status": "exploded"}), 422, "invalid_input")


def test_history_pages_stay_stable_when_new_generations_arrive(api_client, user):
    originals = make_generations(user, 7)
    expected = [str(g.pk) for g in reversed(originals)]

    seen: list[str] = []
    page = api_client.get(LIST_URL, {"limit": 3}).json()
    seen += [item["id"] for item in page["items"]]
    # New work lands between page requests; it must not shift later pages.
    make_generations(user, 2, start_minutes_ago=5)
    while page["next_cursor"]:
        page = api_client.get(LIST_URL, {"limit": 3, "cursor": page["next_cursor"]}).json()
        seen += [item["id"] for item in page["items"]]
        make_generations(user, 1, start_minutes_ago=1)

    assert seen == expected  # no duplicates, no gaps


def test_history_pages_are_stable_when_timestamps_tie(api_client, user):
    same_moment = at(10)
    tied = [GenerationFactory(user=user) for _ in range(5)]
    Generation.objects.filter(pk__in=[g.pk for g in tied]).update(created_at=same_moment)

    seen: list[str] = []
    cursor = None
    while True:
        page = api_client.get(LIST_URL, {"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break

    assert sorted(seen) == sorted(str(g.pk) for g in tied)
    assert len(seen) == len(set(seen)) == 5


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"limit": "many"}, {"cursor": "garbage!"}])
def test_history_refuses_a_bad_limit_or_cursor(api_client, params):
    assert_error(api_client.get(LIST_URL, params), 422, "invalid_input")


def forged_cursor(moment: str) -> str:
    return base64.urlsafe_b64encode(f"{moment}|{uuid.UUID(int=0)}".encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "moment",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-12-07T08:00:00"],
    ids=["year-1-ahead-of-utc", "year-9999-behind-utc", "no-offset"],
)
@pytest.mark.parametrize("url", [LIST_URL, "/api/feed", "/api/purchases"])
def test_a_forged_cursor_at_the_calendars_edge_is_refused_not_a_500(api_client, url, moment):
    # Converting year 1 at +01:00 to UTC overflows; the query used to, with a 500.
    assert_error(api_client.get(url, {"cursor": forged_cursor(moment)}), 422, "invalid_input")


def test_a_history_page_costs_at_most_6_queries_whatever_its_size(api_client, user, django_assert_max_num_queries):
    for generation in make_generations(user, 25):
        AttemptFactory(generation=generation)
        MediaFactory.create_batch(2, generation=generation)
    warm_up(api_client)

    # auth (1) + generations (1) + media (1) + attempts (1) + balance (1)
    with django_assert_max_num_queries(5):
        response = api_client.get(LIST_URL, {"limit": 20})
    assert len(response.json()["items"]) == 20


# --- Feed ----------------------------------------------------------------------------------


def test_the_feed_is_public_and_shows_only_public_delivered_images(client, user, other_user):
    shown = MediaFactory(generation=GenerationFactory(user=user), is_public=True)
    MediaFactory(generation=GenerationFactory(user=user), is_public=False)
    MediaFactory(generation=GenerationFactory(user=other_user), is_public=True, hidden=True)
    MediaFactory(generation=GenerationFactory(user=other_user, status="running"), is_public=True)

    response = client.get("/api/feed")

    assert response.status_code == 200
    body = response.json()
    assert [item["id"] for item in body["items"]] == [str(shown.pk)]
    item = body["items"][0]
    assert item["author"] == "Ada"
    assert item["generation_id"] == str(shown.generation_id)
    assert item["url"] == shown.url
    assert body["next_cursor"] is None


def test_the_feed_pages_stay_stable_when_new_images_arrive(client, user):
    originals = []
    for minutes in range(60, 52, -1):
        media = MediaFactory(generation=GenerationFactory(user=user), is_public=True)
        Media.objects.filter(pk=media.pk).update(created_at=at(minutes))
        originals.append(media)

    seen: list[str] = []
    page = client.get("/api/feed", {"limit": 3}).json()
    seen += [item["id"] for item in page["items"]]
    while page["next_cursor"]:
        MediaFactory(generation=GenerationFactory(user=user), is_public=True)  # newest: lands on page 1
        page = client.get("/api/feed", {"limit": 3, "cursor": page["next_cursor"]}).json()
        seen += [item["id"] for item in page["items"]]

    assert seen == [str(m.pk) for m in reversed(originals)]


def test_a_feed_page_costs_at_most_5_queries(client, user, other_user, django_assert_max_num_queries):
    for owner in (user, other_user):
        for _ in range(15):
            MediaFactory(generation=GenerationFactory(user=owner), is_public=True)

    with django_assert_max_num_queries(5):
        response = client.get("/api/feed", {"limit": 30})
    assert len(response.json()["items"]) == 30


def test_a_feed_page_leaves_the_generations_prompts_logs_and_payload_unread(client, user):
    generation = GenerationFactory(user=user, logs=[{"message": "x" * 500}], prompt_sent="a long prompt")
    MediaFactory(generation=generation, is_public=True)

    with CaptureQueriesContext(connection) as queries:
        response = client.get("/api/feed")

    assert response.json()["items"][0]["generation_id"] == str(generation.pk)
    [page] = [query["sql"] for query in queries if "generation_media" in query["sql"]]
    for column in ("logs", "request_payload", "prompt_sent", "model_chain", "parameters"):
        assert f'"{column}"' not in page, column
    # Nor its author's private details: the feed is public.
    for column in ("email", "password", "last_login"):
        assert f'"{column}"' not in page, column


@pytest.mark.usefixtures("clear_of_rate_window_end")
def test_the_feed_is_rate_limited_per_ip(db, settings):
    settings.RATE_LIMIT_ANON_PER_MINUTE = (3, 60)
    here, elsewhere = Client(REMOTE_ADDR="10.0.0.1"), Client(REMOTE_ADDR="10.0.0.2")
    for _ in range(3):
        assert here.get("/api/feed").status_code == 200

    response = here.get("/api/feed")

    assert_error(response, 429, "rate_limited")
    assert int(response["Retry-After"]) >= 1
    assert elsewhere.get("/api/feed").status_code == 200


# --- Media ---------------------------------------------------------------------------------


def test_the_owner_can_publish_and_unpublish_an_image(api_client, user):
    media = MediaFactory(generation=GenerationFactory(user=user), is_public=False)

    response = api_client.patch(f"/api/media/{media.pk}", {"is_public": True}, content_type="application/json")

    assert response.status_code == 200
    assert set(response.json()) == IMAGE_KEYS
    assert response.json()["is_public"] is True
    media.refresh_from_db()
    assert media.is_public is True
    api_client.patch(f"/api/media/{media.pk}", {"is_public": False}, content_type="application/json")
    media.refresh_from_db()
    assert media.is_public is False


def test_someone_elses_image_is_404_for_update_and_delete(api_client, other_user):
    theirs = MediaFactory(generation=GenerationFactory(user=other_user), is_public=False)

    patched = api_client.patch(f"/api/media/{theirs.pk}", {"is_public": True}, content_type="application/json")
    deleted = api_client.delete(f"/api/media/{theirs.pk}")

    assert_error(patched, 404, "not_found")
    assert_error(deleted, 404, "not_found")
    theirs.refresh_from_db()
    assert theirs.is_public is False


def test_a_media_update_needs_a_boolean(api_client, user):
    media = MediaFactory(generation=GenerationFactory(user=user))

    response = api_client.patch(f"/api/media/{media.pk}", {"is_public": "perhaps"}, content_type="application/json")

    assert_error(response, 422, "invalid_input")
    assert_error(
        api_client.patch(f"/api/media/{media.pk}", "{oops", content_type="application/json"), 422, "invalid_input"
    )


def test_the_owner_can_delete_an_image(api_client, user):
    media = MediaFactory(generation=GenerationFactory(user=user))

    response = api_client.delete(f"/api/media/{media.pk}")

    assert response.status_code == 204
    assert response.content == b""
    assert not Media.objects.filter(pk=media.pk).exists()
    assert_error(api_client.delete(f"/api/media/{media.pk}"), 404, "not_found")


def test_media_routes_need_credentials(client, user):
    media = MediaFactory(generation=GenerationFactory(user=user))

    assert_error(client.delete(f"/api/media/{media.pk}"), 401, "unauthorized")
    assert Media.objects.filter(pk=media.pk).exists()
