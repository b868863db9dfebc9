"""403 pages in the site's layout and the visitor's language: a form sent from a page
that went stale (a CSRF failure) says so and offers the way back; any other refusal
gets the branded 403 page, not Django's bare text."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from stefna.accounts.models import User

pytestmark = pytest.mark.django_db

INDONESIAN = "id-ID,id;q=0.9"


def heading(html: str) -> str:
    match = re.search(r"<h1>(.*?)</h1>", html, flags=re.S)
    assert match, "the page has no <h1>"
    return match.group(1).strip()


def stale_post(client: Client, path: str, **extra: Any):
    """A form posted with a token the session no longer knows (as from a tab left open
    across a sign-in): the cookie is fresh, the page's token is not."""
    client.get("/")  # the CSRF cookie
    return client.post(path, {"display_name": "Stale tab", "csrfmiddlewaretoken": "x" * 64}, **extra)


def test_a_stale_form_gets_a_branded_page_that_leads_back(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    response = stale_post(client, "/accounts/", HTTP_REFERER="http://testserver/accounts/?page=2")

    assert response.status_code == 403
    html = response.content.decode()
    assert heading(html) == "This page was out of date"
    assert 'class="site-header"' in html, "the site's own layout"
    assert "CSRF" not in html
    assert 'href="/accounts/?page=2"' in html  # back to the form's page, fresh
    assert User.objects.get(pk=user.pk).display_name != "Stale tab", "nothing was changed"


def test_the_stale_form_page_never_leads_off_the_site():
    client = Client(enforce_csrf_checks=True)
    response = stale_post(client, "/language/", HTTP_REFERER="https://evil.example/phish")
    assert response.status_code == 403
    html = response.content.decode()
    assert "evil.example" not in html
    assert 'href="/"' in html


def test_the_stale_form_page_speaks_the_visitors_language(user):
    anonymous = Client(enforce_csrf_checks=True)
    html = stale_post(anonymous, "/language/", HTTP_ACCEPT_LANGUAGE=INDONESIAN).content.decode()
    assert heading(html) == "Halaman ini sudah usang"
    assert 'lang="id"' in html

    user.language = "id"
    user.save(update_fields=["language"])
    signed_in = Client(enforce_csrf_checks=True)
    signed_in.force_login(user)
    html = stale_post(signed_in, "/accounts/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert heading(html) == "Halaman ini sudah usang"


def test_a_form_without_any_token_gets_the_same_page():
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/sign-in/", {"email": "ada@example.com"})
    assert response.status_code == 403
    assert heading(response.content.decode()) == "This page was out of date"


@pytest.mark.parametrize(
    ("language", "expected"), [("en", "You can't open this page"), ("id", "Kamu tidak bisa membuka halaman ini")]
)
def test_other_refusals_get_the_branded_403_page(client, language, expected):
    from stefna.accounts.tests.factories import UserFactory

    # Staff without any permission: the admin refuses with PermissionDenied.
    client.force_login(UserFactory(email="helper@example.com", is_staff=True))
    response = client.get("/admin/generation/generation/add/", HTTP_ACCEPT_LANGUAGE=language)
    assert response.status_code == 403
    html = response.content.decode()
    assert heading(html) == expected
    assert 'class="site-header"' in html


def test_a_stale_in_page_action_reloads_the_page_and_says_why_on_it(user):
    # htmx swaps nothing for a 403, so a stale "Make public" used to do nothing at all.
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    response = stale_post(client, "/accounts/", HTTP_HX_REQUEST="true", HTTP_ACCEPT_LANGUAGE=INDONESIAN)

    assert response.status_code == 403
    assert response["HX-Refresh"] == "true"
    reloaded = client.get("/accounts/", HTTP_ACCEPT_LANGUAGE=INDONESIAN).content.decode()
    assert "Halaman ini sudah usang." in reloaded
