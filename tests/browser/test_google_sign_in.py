""" "Continue with Google" in real Chromium against the fake OpenID Connect provider:
the browser itself goes to the provider's authorize page and back to our callback."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from stefna.accounts.models import User
from stefna.accounts.tests.test_google_sign_in import start_fake_google

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def fake_google(settings):
    provider = start_fake_google(settings)
    # As settings.py does for GOOGLE_OIDC_SERVER_URL: the sign-in form may lead to the provider.
    settings.SECURE_CSP = {**settings.SECURE_CSP, "form-action": [*settings.SECURE_CSP["form-action"], provider.url]}
    yield provider
    provider.stop()


def test_continue_with_google_signs_in_through_the_provider(page, fake_google):
    fake_google.identity = {"sub": "g-42", "email": "lin@example.com", "email_verified": True}
    page.goto("/accounts/sign-in/")
    expect(page.get_by_role("button", name="Email me a code")).to_be_visible()
    page.get_by_test_id("google-sign-in").click()
    page.wait_for_url(lambda url: "/accounts/" not in url)
    expect(page.get_by_text(f"Welcome, {User.objects.get(email='lin@example.com').public_name}!")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    assert User.objects.filter(email="lin@example.com").exists()


def test_an_unverified_google_email_is_refused_in_the_browser(page, fake_google):
    fake_google.identity = {"sub": "g-43", "email": "mallory@example.com", "email_verified": False}
    page.goto("/accounts/sign-in/")
    page.get_by_test_id("google-sign-in").click()
    page.wait_for_url(re.compile(r"/accounts/sign-in/$"))
    expect(page.get_by_text("Google has not verified mallory@example.com")).to_be_visible()
    assert not User.objects.filter(email="mallory@example.com").exists()
