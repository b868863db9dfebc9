"""CSRF on every session-authenticated write, and owner isolation on every object route.

Routes are discovered (tests/security/routes.py), not listed by hand: a route added
later is checked automatically, and one with an object id must be added to the owner
table below, which makes someone decide what "someone else's" means for it.
"""

from __future__ import annotations

import base64
import json

import pytest
from django.middleware.csrf import get_token
from django.test import Client, RequestFactory

from credits.models import CreditEntry
from credits.selectors import balance_of
from generation.models import Generation, Media
from generation.tests.factories import MediaFactory
from stefna.accounts.models import ApiToken
from stefna.accounts.services import api_token_create
from tests.images import make_jpeg

from .conftest import STYLE_SLUG, assert_error
from .routes import UNSAFE_METHODS, api_operations, html_routes

pytestmark = pytest.mark.django_db

# Writes that take no session: fal's callback proves itself with fal's signature instead,
# Stripe's with its Stripe-Signature (STRIPE_WEBHOOK_SECRET).
UNAUTHENTICATED_API_WRITES = {"POST /api/fal/webhook", "POST /api/stripe/webhook"}


@pytest.fixture
def owned(api_client, user, style, funded):
    """A queued generation (started through the API, so its credits are reserved) and a
    private image, both the user's."""
    body = {"image_base64": base64.b64encode(make_jpeg(64, 64)).decode(), "preset": STYLE_SLUG}
    response = api_client.post("/api/generations", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 202, response.content
    generation = Generation.objects.get(pk=response.json()["id"])
    media = MediaFactory(user=user, is_public=False)
    token, _ = api_token_create(user=user, name="second")
    return generation, media, token


def _state(user, generation, media):
    """Everything a refused write must leave as it was."""
    generation.refresh_from_db()
    return (
        generation.status,
        generation.deleted_at,
        Media.objects.filter(pk=media.pk).values_list("is_public", flat=True).first(),
        CreditEntry.objects.filter(user=user).count(),
        balance_of(user=user),
        ApiToken.objects.filter(user=user, revoked_at__isnull=True).count(),
    )


def _values(generation, media, token):
    return {"generation_id": generation.pk, "media_id": media.pk, "token_id": token.pk, "share_id": media.share_id}


# --- CSRF ----------------------------------------------------------------------------------


def test_the_only_unauthenticated_api_writes_are_the_known_ones():
    writes = {str(op) for op in api_operations() if op.method in UNSAFE_METHODS and not op.authenticated}

    assert writes == UNAUTHENTICATED_API_WRITES


def test_every_api_write_with_a_session_but_no_csrf_token_is_403_json(user, owned):
    generation, media, token = owned
    before = _state(user, generation, media)
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    writes = [op for op in api_operations() if op.method in UNSAFE_METHODS and op.authenticated]
    assert len(writes) >= 5

    for op in writes:
        response = client.generic(
            op.method.upper(),
            op.url(**_values(generation, media, token)),
            data=json.dumps({"is_public": True, "preset": STYLE_SLUG, "prompt": "x"}),
            content_type="application/json",
        )
        assert_error(response, 403, "forbidden")

    assert _state(user, generation, media) == before


def test_with_the_csrf_token_the_same_session_write_goes_through(user, owned):
    """The control for the test above: the 403 was the CSRF check, not something else."""
    generation, media, _ = owned
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    page = RequestFactory().get("/")
    token = get_token(page)  # the masked token a page embeds; its secret goes in the cookie
    client.cookies["csrftoken"] = page.META["CSRF_COOKIE"]

    response = client.patch(
        f"/api/media/{media.pk}",
        data=json.dumps({"is_public": True}),
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
    )

    assert response.status_code == 200, response.content
    assert Media.objects.get(pk=media.pk).is_public is True


@pytest.mark.parametrize("signed_in", [True, False], ids=["signed-in", "visitor"])
def test_every_html_form_post_without_a_csrf_token_is_403(user, owned, signed_in):
    generation, media, token = owned
    before = _state(user, generation, media)
    client = Client(enforce_csrf_checks=True)
    if signed_in:
        client.force_login(user)
    routes = html_routes()
    assert len(routes) > 20

    for route in routes:
        url = route.url(**_values(generation, media, token))
        response = client.post(url, {"is_public": "1", "display_name": "x", "name": "x", "email": "a@b.c"})
        assert response.status_code == 403, f"POST {url} ({route.name}) answered {response.status_code}"

    assert _state(user, generation, media) == before


# --- Owner isolation -----------------------------------------------------------------------

# Every HTML route with an object id, and what another signed-in user must get.
HTML_OWNER_ROUTES = {
    "generation_detail": "GET",
    "generation_card": "GET",
    "generation_events": "GET",  # the status page's live card
    "generation_cancel": "POST",
    "generation_delete": "POST",
    "history_item": "GET",  # a history card fetching itself while it runs
    "media_share": "GET",  # a *private* image; public ones are shareable by design
    "share_page": "GET",  # the same, at its share id
    # Google sign-in: another provider id than "google" is unknown.
    "openid_connect_login": "GET",
    "openid_connect_callback": "GET",
    "media_visibility": "POST",
    "media_delete": "POST",
    "accounts:token_revoke": "POST",
    "credits:purchase_done": "GET",
    "credits:purchase_status": "GET",
    "credits:test_checkout": "POST",
    "credits:purchase_continue": "POST",
}


def test_every_html_object_route_is_in_the_owner_table():
    with_ids = {
        # media/ and images/ are covered by tests/security/test_media_privacy.py
        route.name
        for route in html_routes()
        if route.params and not route.route.startswith(("admin/", "media/", "images/"))
    }

    assert with_ids == set(HTML_OWNER_ROUTES), "add the new route to HTML_OWNER_ROUTES with what others get"


def test_another_user_gets_404_from_every_html_object_route_and_changes_nothing(user, other_user, owned):
    generation, media, token = owned
    before = _state(user, generation, media)
    intruder = Client()
    intruder.force_login(other_user)
    by_name = {route.name: route for route in html_routes()}

    for name, method in HTML_OWNER_ROUTES.items():
        url = by_name[name].url(**_values(generation, media, token))
        response = intruder.get(url) if method == "GET" else intruder.post(url, {"is_public": "1"})
        if name == "accounts:token_revoke":
            # Revoking is answered with a redirect whatever the id (no oracle); the token lives on.
            assert response.status_code in (302, 404), (url, response.status_code)
        else:
            assert response.status_code == 404, f"{method} {url} answered {response.status_code}"
            assert str(generation.pk) not in response.content.decode() or name == "generation_cancel"

    assert _state(user, generation, media) == before


def test_every_api_object_route_is_404_for_another_user_and_changes_nothing(user, other_user, owned):
    generation, media, token = owned
    before = _state(user, generation, media)
    _, intruder_token = api_token_create(user=other_user, name="intruder")
    intruder = Client(HTTP_AUTHORIZATION=f"Bearer {intruder_token}")
    object_routes = [op for op in api_operations() if op.params and op.authenticated]
    assert {str(op) for op in object_routes} >= {
        "GET /api/generations/{generation_id}",
        "POST /api/generations/{generation_id}/cancel",
        "PATCH /api/media/{media_id}",
        "DELETE /api/media/{media_id}",
    }

    for op in object_routes:
        response = intruder.generic(
            op.method.upper(),
            op.url(**_values(generation, media, token)),
            data=json.dumps({"is_public": True}),
            content_type="application/json",
        )
        body = assert_error(response, 404, "not_found")
        assert str(generation.pk) not in json.dumps(body)

    assert _state(user, generation, media) == before


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "1", "00000000-0000-0000-0000-000000000000", "' OR 1=1 --"])
def test_ids_that_do_not_exist_are_404_or_invalid_input(api_client, user, bad_id):
    for method, path in [
        ("GET", "/api/generations/{}"),
        ("POST", "/api/generations/{}/cancel"),
        ("PATCH", "/api/media/{}"),
        ("DELETE", "/api/media/{}"),
    ]:
        response = api_client.generic(
            method, path.format(bad_id), data=json.dumps({"is_public": True}), content_type="application/json"
        )
        expected = (404, "not_found") if bad_id.startswith("0000") else (422, "invalid_input")
        if response.status_code == 404 and expected[0] == 422:
            # The path converter may refuse a non-UUID before the route: still a JSON 404.
            expected = (404, "not_found")
        assert_error(response, *expected)


def test_html_ids_that_do_not_exist_are_404_pages(user):
    client = Client()
    client.force_login(user)

    for url in ["/g/00000000-0000-4000-8000-000000000000/", "/i/00000000-0000-4000-8000-000000000000/", "/g/nope/"]:
        response = client.get(url)
        assert response.status_code == 404, url
        assert response["Content-Type"].startswith("text/html")
