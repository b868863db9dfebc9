"""The header's language switcher in real Chromium: it returns to the page it was used on,
#fragment included (a browser never sends one, so stefna.js adds it as `next`), and it
still switches without JavaScript, only without the fragment."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import DESKTOP, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_switching_language_keeps_the_fragment_of_the_page(page, live_server):
    sign_in(page, "fragment@example.com")
    page.goto("/accounts/#credits")
    expect(page.get_by_role("heading", level=1)).to_have_text("Account")

    page.get_by_test_id("language-id").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Akun")
    assert page.url == f"{live_server.url}/accounts/#credits"
    assert page.evaluate("location.hash") == "#credits"
    # And back, from a page whose address has a query too.
    page.goto("/accounts/?from=mail#your-data")
    page.get_by_test_id("language-en").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Account")
    assert page.url == f"{live_server.url}/accounts/?from=mail#your-data"


def test_without_a_fragment_it_returns_to_the_page_as_before(page, live_server):
    page.goto("/accounts/sign-in/?next=/history/")
    page.get_by_test_id("language-id").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Masuk ke Stefna")
    assert page.url == f"{live_server.url}/accounts/sign-in/?next=/history/"


def test_without_javascript_it_still_switches_and_only_the_fragment_is_lost(browser, live_server):
    context = browser.new_context(viewport=DESKTOP, base_url=live_server.url, java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto("/accounts/sign-in/#email")
        page.get_by_test_id("language-id").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Masuk ke Stefna")
        assert re.fullmatch(rf"{re.escape(live_server.url)}/accounts/sign-in/", page.url), page.url
    finally:
        context.close()
