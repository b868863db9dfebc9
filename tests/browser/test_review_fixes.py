"""A UX review's findings, in real Chromium at 1280 px and 390 px: the history tiles' "⋯"
menu is seen and usable, and deleting a generation's last image leaves the placeholder a
reload shows; the signed-out home page does not scroll sideways; a mistyped account
deletion keeps focus on its field and error; the studio keeps the reason it refused a
file; the share page's copy message leaves its button row alone."""

from __future__ import annotations

import re

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from playwright.sync_api import expect

from generation import storage
from generation.models import Media
from stefna.accounts.models import User
from tests.browser.conftest import DESKTOP, PHONE
from tests.browser.test_result_and_forms import _png, finished_generation, signed_in_user
from tests.browser.test_studio_flows import ghibli_tears

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def assert_usable(page, locator) -> None:
    """`locator` is on screen and a tap at its middle reaches it (not whatever covers or clips it)."""
    # The page scrolls to it, as a person would; never Playwright's scrollIntoView, which
    # also scrolls a clipping `overflow: hidden` box and so shows what a person can't see.
    page.evaluate(
        """element => {
            const box = element.getBoundingClientRect();
            if (box.bottom > innerHeight) window.scrollBy(0, box.bottom - innerHeight + 16);
        }""",
        locator.element_handle(),
    )
    box = locator.bounding_box()
    viewport = page.viewport_size
    assert box is not None
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"], box
    assert box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"], box
    reached = locator.evaluate(
        """element => {
            const box = element.getBoundingClientRect();
            const hit = document.elementFromPoint(box.left + box.width / 2, box.top + box.height / 2);
            return hit === element || element.contains(hit);
        }"""
    )
    assert reached, f"a tap on {locator} lands on something else"


def _second_image(generation) -> Media:
    name = default_storage.save(
        f"{storage.RESULTS_FOLDER}/{storage.result_name(generation.pk, 1)}.png",
        ContentFile(_png(600, 800, (90, 160, 90))),
    )
    return Media.objects.create(
        generation=generation,
        user=generation.user,
        index=1,
        url=default_storage.url(name),
        storage_key=name,
        width=600,
        height=800,
        persisted=True,
        model="fal-ai/ghiblify",
    )


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
@pytest.mark.parametrize("images", [1, 2], ids=["one-image", "two-images"])
def test_an_image_tiles_menu_in_history_is_seen_and_usable(page, viewport, images):
    page.set_viewport_size(viewport)
    user = signed_in_user(page, f"menu-{images}-{viewport['width']}@example.com")
    generation = finished_generation(user)
    if images == 2:
        _second_image(generation)
    page.goto("/history/")

    # The first tile: on a phone with two images it is the left one, whose menu must not
    # open off the left edge of the screen.
    tile = page.get_by_test_id("media-tile").first
    tile.get_by_test_id("more").click()
    download = tile.get_by_role("link", name="Download")
    delete = tile.get_by_role("button", name="Delete image")
    expect(download).to_be_visible()
    assert_usable(page, download)
    assert_usable(page, delete)

    page.once("dialog", lambda dialog: dialog.accept())
    delete.click()
    expect(page.get_by_test_id("media-tile")).to_have_count(images - 1)
    assert Media.objects.filter(generation=generation).count() == images - 1
    if images == 1:
        # Not a blank card: the placeholder a reload shows.
        expect(page.get_by_test_id("history-item").get_by_text("Images deleted")).to_be_visible()


def test_the_signed_out_home_page_does_not_scroll_sideways_on_a_phone(page):
    page.set_viewport_size(PHONE)
    page.goto("/")
    expect(page.locator(".preset-showcase").first).to_be_visible()
    overflow = page.evaluate("document.scrollingElement.scrollWidth - innerWidth")
    assert overflow <= 0, f"the page scrolls {overflow} px sideways"
    # Each row of styles still scrolls inside itself.
    row = page.locator(".preset-showcase").first
    assert row.evaluate("row => row.scrollWidth > row.clientWidth")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_mistyped_deletion_email_keeps_focus_on_the_field_with_its_error(page, viewport):
    page.set_viewport_size(viewport)
    signed_in_user(page, f"leaving-{viewport['width']}@example.com")
    page.goto("/accounts/")
    field = page.get_by_label(re.compile("to confirm"))
    field.fill("leaving@example.co")
    page.get_by_role("button", name="Delete my account").click()

    expect(page.locator("#delete-confirm-error")).to_be_visible()
    field = page.get_by_label(re.compile("to confirm"))
    expect(field).to_be_focused()
    expect(field).to_have_accessible_description("Type your account's email address exactly to confirm.")
    assert_usable(page, field)
    assert_usable(page, page.locator("#delete-confirm-error"))
    expect(page.locator(".messages")).to_have_count(0)


@pytest.mark.parametrize("refused", ["not-an-image", "too-large"])
def test_the_studio_keeps_the_reason_it_refused_a_file_when_create_is_pressed(page, tmp_path, settings, refused):
    settings.MAX_UPLOAD_BYTES = 40_000
    ghibli_tears()
    signed_in_user(page, f"refused-{refused}@example.com")
    page.goto("/")
    if refused == "not-an-image":
        bad = tmp_path / "notes.jpg"
        bad.write_text("this is not a photo")
        reason = "That file isn't an image we can read. Upload a JPEG, PNG, WebP, HEIC or AVIF photo."
    else:
        bad = tmp_path / "big.png"
        bad.write_bytes(_png(1600, 1600, (10, 20, 30)) + b"\0" * 50_000)
        reason = "That image is larger than"
    page.set_input_files("#id_image", bad)
    expect(page.locator("[data-image-error]")).to_contain_text(reason)
    page.get_by_test_id("preset-ghibli_tears").click()

    page.get_by_test_id("start").click()

    summary = page.get_by_test_id("error-summary")
    expect(summary).to_be_focused()
    expect(summary.get_by_role("link")).to_contain_text(reason)
    expect(summary).not_to_contain_text("Choose a photo")
    expect(page.locator("[data-image-error]")).to_contain_text(reason)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
@pytest.mark.parametrize("copied", [True, False], ids=["copied", "copy-refused"])
def test_the_share_buttons_copy_message_leaves_the_button_row_alone(browser, live_server, viewport, copied):
    # A browser with no share sheet, whose clipboard takes the link or refuses it.
    context = browser.new_context(viewport=viewport, base_url=live_server.url)
    context.add_init_script(
        f"""Object.defineProperty(navigator, "share", {{value: undefined}});
        Object.defineProperty(navigator, "clipboard", {{value: {{writeText: () =>
            {"Promise.resolve()" if copied else "Promise.reject(new Error('denied'))"}}}}});"""
    )
    page = context.new_page()
    try:
        user = User.objects.create_user(email=f"sharer-{viewport['width']}@example.com")
        generation = finished_generation(user)
        media = Media.objects.get(generation=generation)
        Media.objects.filter(pk=media.pk).update(is_public=True)
        page.goto(f"/i/{media.share_id}")
        # Where each button of the row sits on the page (not the viewport: the page may scroll).
        layout = """row => [...row.querySelectorAll(".button")].map(button => {
            const box = button.getBoundingClientRect();
            return [box.left + scrollX, box.top + scrollY, box.width, box.height];
        })"""
        row = page.locator(".share-actions")
        before = row.evaluate(layout)

        page.get_by_test_id("share-button").click()

        status = page.locator("[data-share-status]")
        expect(status).to_have_text("Link copied" if copied else "Copy this link:")
        assert row.evaluate(layout) == before
        if not copied:
            expect(page.locator("[data-share-link]")).to_be_focused()
    finally:
        context.close()
