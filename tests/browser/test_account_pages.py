"""The account page and buying credits in real Chromium: how they look and read, at a
phone's width and a desktop's, in English and Bahasa Indonesia."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect

from stefna.accounts.models import User
from tests.browser.conftest import DESKTOP

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def signed_in_page(browser, live_server, user: User, *, viewport=DESKTOP, locale: str = "en-US"):
    """A page with `user`'s session (the sign-in flow itself has its own tests)."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport=viewport, base_url=live_server.url, locale=locale)
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": live_server.url,
            }
        ]
    )
    context.set_default_timeout(15_000)
    return context, context.new_page()


def test_delete_my_account_looks_like_the_irreversible_action_it_is(browser, live_server):
    """The stylesheet had no rule for `.button.danger`: "Delete my account" was drawn as
    an ordinary white button, like "Download my data" above it."""
    user = User.objects.create_user(email="leaving@example.com")
    context, page = signed_in_page(browser, live_server, user)
    page.goto("/accounts/")
    delete = page.get_by_role("button", name="Delete my account")
    download = page.get_by_role("link", name="Download my data")
    expect(delete).to_be_visible()
    background = delete.evaluate("el => getComputedStyle(el).backgroundColor")
    assert background == "rgb(180, 35, 24)", background  # --danger
    assert background != download.evaluate("el => getComputedStyle(el).backgroundColor")
    assert delete.evaluate("el => getComputedStyle(el).color") == "rgb(255, 255, 255)"
    context.close()
