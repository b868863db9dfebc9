"""Small things a walk through the app at 375 px and 1280 px, in English and Bahasa
Indonesia, turned up: the running steps' labels, a ⋯ menu near the window's bottom,
and "Copy token"'s feedback."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from generation.models import Generation
from stefna.accounts.models import User
from tests.browser.test_account_pages import signed_in_page
from tests.browser.test_result_and_forms import finished_generation

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE_375 = {"width": 375, "height": 812}
LAPTOP = {"width": 1280, "height": 800}


@pytest.mark.parametrize("viewport", [PHONE_375, LAPTOP], ids=["phone", "laptop"])
@pytest.mark.parametrize("locale", ["id-ID", "en-US"], ids=["indonesian", "english"])
def test_the_running_steps_keep_each_label_on_one_line(browser, live_server, viewport, locale):
    """At 375 px "Dalam antrean" (In the queue) broke over two lines under its bar."""
    user = User.objects.create_user(email="steps@example.com", language=locale[:2])
    generation = finished_generation(user, status=Generation.Status.QUEUED)
    context, page = signed_in_page(browser, live_server, user, viewport=viewport, locale=locale)
    page.goto(f"/g/{generation.pk}/")
    steps = page.locator("ol.progress")
    expect(steps.locator("li").first).to_have_text("Dalam antrean" if locale == "id-ID" else "Queued")
    lines = steps.evaluate(
        """ol => [...ol.children].map(li => {
            const range = document.createRange();
            range.selectNodeContents(li);
            return [li.textContent.trim(), new Set([...range.getClientRects()].map(r => Math.round(r.top))).size];
        })"""
    )
    assert all(count == 1 for _, count in lines), lines
    client_width, scroll_width = steps.evaluate("el => [el.clientWidth, el.scrollWidth]")
    assert scroll_width <= client_width, (client_width, scroll_width)
    # Still three bars across the card, none of them a sliver.
    widths = steps.evaluate("ol => [...ol.children].map(li => li.getBoundingClientRect().width)")
    assert min(widths) >= client_width / 5, widths
    context.close()


def _menu_near_the_bottom(page, menu) -> None:
    """Shrink the window so the ⋯ button sits just above its bottom edge."""
    page.evaluate("window.scrollTo(0, 0)")
    bottom = menu.locator("summary").evaluate("el => el.getBoundingClientRect().bottom + window.scrollY")
    page.set_viewport_size({"width": page.viewport_size["width"], "height": int(bottom) + 8})
    page.evaluate("window.scrollTo(0, 0)")


@pytest.mark.parametrize("viewport", [PHONE_375, LAPTOP], ids=["phone", "laptop"])
@pytest.mark.parametrize("where", ["history card", "history image", "result"])
def test_a_menu_near_the_bottom_of_the_window_opens_where_it_can_be_seen(browser, live_server, viewport, where):
    """A ⋯ menu near the bottom of the window opened partly below the fold."""
    user = User.objects.create_user(email="menus@example.com")
    generation = finished_generation(user)
    context, page = signed_in_page(browser, live_server, user, viewport=viewport)
    page.goto(f"/g/{generation.pk}/" if where == "result" else "/history/")
    menu = page.locator(
        ".history-actions details[data-menu]" if where == "history card" else "details[data-menu]"
    ).first
    _menu_near_the_bottom(page, menu)
    menu.locator("summary").click()
    panel = menu.locator(".menu-panel")
    expect(panel).to_be_visible()
    box = panel.bounding_box()
    height = page.evaluate("window.innerHeight")
    assert box["y"] >= 0 and box["y"] + box["height"] <= height, (box, height)
    # Every item in it can be tapped where it is.
    for item in panel.locator(".menu-item").all():
        item_box = item.bounding_box()
        assert item_box["y"] + item_box["height"] <= height, (item_box, height)
    context.close()


def test_a_menu_with_room_below_still_opens_downwards(browser, live_server):
    user = User.objects.create_user(email="room@example.com")
    finished_generation(user)
    context, page = signed_in_page(browser, live_server, user, viewport=LAPTOP)
    page.goto("/history/")
    menu = page.locator("details[data-menu]").first
    menu.locator("summary").click()
    summary_box = menu.locator("summary").bounding_box()
    assert menu.locator(".menu-panel").bounding_box()["y"] >= summary_box["y"] + summary_box["height"]
    context.close()


CLIPBOARD_REFUSES = """Object.defineProperty(navigator, "clipboard", {value: {
    writeText: () => Promise.reject(new DOMException("Write permission denied.", "NotAllowedError"))}});"""
CLIPBOARD_TAKES = """window.copied = []; Object.defineProperty(navigator, "clipboard", {value: {
    writeText: text => { window.copied.push(text); return Promise.resolve(); }}});"""


@pytest.mark.parametrize("locale", ["en-US", "id-ID"], ids=["english", "indonesian"])
def test_copy_token_says_when_the_clipboard_refuses_and_selects_the_token(browser, live_server, locale):
    """ "Copy token" did nothing visible when the clipboard refused (permission denied)."""
    user = User.objects.create_user(email="copy@example.com", language=locale[:2])
    context, page = signed_in_page(browser, live_server, user, viewport=PHONE_375, locale=locale)
    page.add_init_script(CLIPBOARD_REFUSES)
    page.goto("/accounts/")
    page.locator(".token-form button[type=submit]").click()
    token = page.get_by_test_id("new-token").inner_text()
    page.locator("[data-copy]").click()
    status = page.get_by_test_id("copy-status")
    expect(status).to_have_attribute("role", "status")
    expect(status).to_be_visible()
    expect(status).to_have_text(
        "Couldn’t copy to the clipboard. The token is selected: copy it yourself."
        if locale == "en-US"
        else "Tidak bisa menyalin ke papan klip. Tokennya sudah dipilih: salin sendiri, ya."
    )
    assert page.evaluate("String(window.getSelection())").strip() == token
    context.close()


def test_copy_token_says_it_copied(browser, live_server):
    user = User.objects.create_user(email="copied@example.com")
    context, page = signed_in_page(browser, live_server, user, viewport=PHONE_375)
    page.add_init_script(CLIPBOARD_TAKES)
    page.goto("/accounts/")
    page.locator(".token-form button[type=submit]").click()
    token = page.get_by_test_id("new-token").inner_text()
    page.locator("[data-copy]").click()
    status = page.get_by_test_id("copy-status")
    expect(status).to_have_text("Copied!")
    expect(status).to_have_attribute("role", "status")
    assert page.evaluate("window.copied") == [token]
    context.close()
