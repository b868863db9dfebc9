"""Conditional GETs of a generation's status: `GET /api/generations/{id}` and the status
card answer 304 to a matching If-None-Match after one small query (the version and the
owner's wallet), and a change anything shows makes the tag differ."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from credits import ledger
from generation.models import Generation, Media
from generation.tests.factories import MediaFactory

from .api_support import assert_error

pytestmark = pytest.mark.django_db


def warm_up(api_client) -> None:
    # The first call with a fresh token stamps its last_used_at (one extra UPDATE, once a minute).
    api_client.get("/api/me")


def url(generation: Generation) -> str:
    return f"/api/generations/{generation.pk}"


def test_the_api_answers_an_etag_and_304_for_it_after_one_query(api_client, running, django_assert_num_queries):
    warm_up(api_client)
    first = api_client.get(url(running))
    etag = first["ETag"]
    assert first.status_code == 200 and etag.startswith('W/"')
    assert first["Cache-Control"] == "private, no-cache"

    # Authentication (the token) and the version read; no generation, attempt or image read.
    with django_assert_num_queries(2) as captured:
        again = api_client.get(url(running), headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == etag
    generation_reads = [q["sql"] for q in captured.captured_queries if "generation_" in q["sql"]]
    assert len(generation_reads) == 1
    assert "generation_attempt" not in generation_reads[0] and "generation_media" not in generation_reads[0]


def test_a_visible_change_answers_the_new_body_with_a_new_tag(api_client, running):
    etag = api_client.get(url(running))["ETag"]
    Generation.objects.filter(pk=running.pk).update(queue_position=2)

    changed = api_client.get(url(running), headers={"If-None-Match": etag})

    assert changed.status_code == 200
    assert changed.json()["queue_position"] == 2
    assert changed["ETag"] != etag
    assert api_client.get(url(running), headers={"If-None-Match": changed["ETag"]}).status_code == 304


def test_a_new_image_or_attempt_change_moves_the_tag(api_client, running):
    etag = api_client.get(url(running))["ETag"]
    media = MediaFactory(generation=running, persisted=False)
    with_image = api_client.get(url(running), headers={"If-None-Match": etag})
    assert with_image.status_code == 200 and len(with_image.json()["images"]) == 1

    Media.objects.filter(pk=media.pk).update(persisted=True)
    assert api_client.get(url(running), headers={"If-None-Match": with_image["ETag"]}).status_code == 200


def test_the_poller_bookkeeping_keeps_the_304(api_client, running):
    etag = api_client.get(url(running))["ETag"]
    Generation.objects.filter(pk=running.pk).update(next_check_at=timezone.now())
    assert api_client.get(url(running), headers={"If-None-Match": etag}).status_code == 304


def test_a_balance_change_moves_the_tag(api_client, running, user):
    # remaining_coins is the owner's balance: credits granted or spent elsewhere change it.
    etag = api_client.get(url(running))["ETag"]
    ledger.grant(user=user, amount=5, note="test")

    again = api_client.get(url(running), headers={"If-None-Match": etag})

    assert again.status_code == 200 and again["ETag"] != etag


def test_the_language_is_part_of_the_tag(api_client, running):
    english = api_client.get(url(running), headers={"Accept-Language": "en"})["ETag"]
    bahasa = api_client.get(url(running), headers={"Accept-Language": "id", "If-None-Match": english})
    assert bahasa.status_code == 200 and bahasa["ETag"] != english


def test_someone_elses_generation_is_404_never_304(client, running, other_user):
    own = Client()
    own.force_login(running.user)
    etag = own.get(url(running))["ETag"]
    stranger = Client()
    stranger.force_login(other_user)
    response = stranger.get(url(running), headers={"If-None-Match": etag})
    assert_error(response, 404, "not_found")
    response = stranger.get(url(running), headers={"If-None-Match": "*"})
    assert_error(response, 404, "not_found")


# --- The status card ------------------------------------------------------------------------


def card_url(generation: Generation) -> str:
    return f"/g/{generation.pk}/card/"


def test_the_card_answers_304_after_one_query_beyond_the_session(user, running, django_assert_num_queries):
    browser = Client()
    browser.force_login(user)
    first = browser.get(card_url(running), headers={"HX-Request": "true"})
    assert first.status_code == 200
    etag = first["ETag"]

    # The session and its user, then the version read.
    with django_assert_num_queries(3) as captured:
        again = browser.get(card_url(running), headers={"HX-Request": "true", "If-None-Match": etag})
    assert again.status_code == 304
    generation_reads = [q["sql"] for q in captured.captured_queries if "generation_" in q["sql"]]
    assert len(generation_reads) == 1


def test_the_card_tag_follows_the_state_and_htmx(user, running):
    browser = Client()
    browser.force_login(user)
    etag = browser.get(card_url(running), headers={"HX-Request": "true"})["ETag"]
    assert browser.get(card_url(running), headers={"If-None-Match": etag}).status_code == 200  # not htmx

    Generation.objects.filter(pk=running.pk).update(status=Generation.Status.SUCCEEDED)
    done = browser.get(card_url(running), headers={"HX-Request": "true", "If-None-Match": etag})
    assert done.status_code == 200
    assert 'data-status="succeeded"' in done.content.decode()


def test_someone_elses_card_is_404_never_304(user, other_user, running):
    owner = Client()
    owner.force_login(user)
    etag = owner.get(card_url(running))["ETag"]
    stranger = Client()
    stranger.force_login(other_user)
    assert stranger.get(card_url(running), headers={"If-None-Match": etag}).status_code == 404


def sign_in_by_code(browser: Client, email: str) -> None:
    browser.post("/accounts/sign-in/", {"email": email})
    code = re.search(r"\b(\d{6})\b", str(mail.outbox[-1].body))
    assert code, mail.outbox[-1].body
    assert browser.post("/accounts/code/", {"code": code.group(1)}).status_code == 302


def csrf_token_in(html: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert found, "the card has no CSRF token"
    return found.group(1)


def test_a_card_cached_before_signing_out_and_in_again_is_not_revalidated(user, running):
    # The running card's Cancel form carries a CSRF token, and signing in gives the browser
    # a new CSRF cookie: a 304 would have htmx swap in the cached card, whose Cancel
    # then fails the CSRF check (403) though nothing about the job changed.
    browser = Client()
    sign_in_by_code(browser, user.email)
    cached = browser.get(card_url(running), headers={"HX-Request": "true"})
    stale_token = csrf_token_in(cached.content.decode())
    browser.post("/accounts/sign-out/")
    sign_in_by_code(browser, user.email)

    again = browser.get(card_url(running), headers={"HX-Request": "true", "If-None-Match": cached["ETag"]})

    assert again.status_code == 200, "a 304 keeps the card whose CSRF token the new session refuses"
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = browser.cookies
    cancel = f"/g/{running.pk}/cancel/"
    assert strict.post(cancel, {"csrfmiddlewaretoken": stale_token}).status_code == 403  # (why it matters)
    assert again["ETag"] != cached["ETag"]
    fresh_token = csrf_token_in(again.content.decode())
    assert strict.post(cancel, {"csrfmiddlewaretoken": fresh_token}).status_code != 403
