"""Issue 19's Deliver list, the points the other browser files leave out, in real Chromium
at 1280 px and 390 px: styles that need no photo don't ask for one; the feed shows a
display name the user chose, never the email; cards show whole images; dimensions are
checked before upload with the server's words; the ledger paginates; the result page and
the payment pages have phone-sized tap targets and pass axe."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from credits import ledger
from credits.models import CreditEntry, Purchase
from generation import first_page
from generation.images import validate_image
from generation.models import Generation, Media
from generation.registry import REALISTIC_VISION
from tests.browser.conftest import DESKTOP, PHONE, screenshot
from tests.browser.test_accessibility import violations
from tests.browser.test_result_and_forms import _png, finished_generation, signed_in_user
from tests.browser.test_studio_flows import ghibli_tears, photo
from tests.images import make_image_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

REALISTIC = "realistic"  # seeded: Realistic Vision, text-to-image, then an image fallback


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_a_style_that_needs_no_photo_does_not_ask_for_one(page, tmp_path, viewport):
    page.set_viewport_size(viewport)
    ghibli_tears()
    user = signed_in_user(page, "demo@example.com")
    page.goto("/")
    photo_input = page.locator("[data-photo-input]")
    note = page.get_by_test_id("no-photo-note")
    expect(photo_input).to_be_visible()
    expect(note).to_be_hidden()
    expect(page.get_by_test_id(f"preset-{REALISTIC}").get_by_test_id("no-photo-badge")).to_have_text("no photo needed")
    # A photo chosen first stays chosen while a text style is tried, and comes back with a photo style.
    page.set_input_files("#id_image", photo(tmp_path))
    expect(page.locator("[data-preview]")).to_be_visible()
    page.get_by_test_id(f"preset-{REALISTIC}").click()
    expect(photo_input).to_be_hidden()
    expect(note).to_have_text("This style paints from your description alone: no photo needed.")
    assert page.locator("#id_image").evaluate("input => input.disabled && input.files.length === 1")
    page.get_by_test_id("preset-ghibli_tears").click()
    expect(photo_input).to_be_visible()
    expect(page.locator("[data-preview]")).to_be_visible()
    assert page.locator("#id_image").evaluate("input => !input.disabled && input.files.length === 1")

    page.get_by_test_id(f"preset-{REALISTIC}").click()
    page.get_by_label("Describe what you want to see").fill("a lighthouse on a cliff at sunset")
    if viewport is DESKTOP:
        page.evaluate("window.scrollTo(0, 0)")  # the photo step, now a note, at the top
        screenshot(page, "studio-no-photo", full_page=False)
    page.get_by_test_id("start").click()

    page.wait_for_url(re.compile(r"/g/[0-9a-f-]{36}/$"))
    generation = Generation.objects.get(user=user)
    # Nothing uploaded: the photo input was disabled, and the chain lost its image fallback.
    assert not generation.source_image
    assert generation.model_chain == [REALISTIC_VISION]
    expect(page.get_by_test_id("status-card")).to_be_visible()
    expect(page.locator(".status-source")).to_have_count(0)


def test_without_javascript_a_text_style_still_starts_without_a_photo(browser, live_server, tmp_path):
    """Progressive enhancement: with scripts off the photo field stays on the page, and the
    server takes a text style without a file."""
    context = browser.new_context(viewport=PHONE, base_url=live_server.url, java_script_enabled=False)
    page = context.new_page()
    try:
        ghibli_tears()
        signed_in_user(page, "noscript@example.com")
        page.goto("/")
        expect(page.locator("[data-photo-input]")).to_be_visible()
        page.get_by_test_id(f"preset-{REALISTIC}").click()
        page.locator("#id_prompt").fill("a red fox in a snowy forest")
        page.get_by_test_id("start").click()
        page.wait_for_url(re.compile(r"/g/[0-9a-f-]{36}/$"))
        generation = Generation.objects.get(user__email="noscript@example.com")
        assert not generation.source_image and generation.model_chain == [REALISTIC_VISION]
    finally:
        context.close()


def test_the_result_of_a_text_style_is_painted_offline_with_no_before_after(page, start_worker):
    start_worker()
    user = signed_in_user(page, "scene@example.com")
    page.goto("/")
    page.get_by_test_id(f"preset-{REALISTIC}").click()
    page.get_by_label("Describe what you want to see").fill("a cottage in the mountains at golden hour")
    page.get_by_test_id("start").click()
    page.wait_for_url(re.compile(r"/g/[0-9a-f-]{36}/$"))
    card = page.get_by_test_id("status-card")
    expect(card).to_have_attribute("data-status", "succeeded", timeout=45_000)

    image = page.get_by_test_id("media-tile").first.locator("img").first
    expect(image).to_have_js_property("complete", True)
    assert image.evaluate("img => img.naturalWidth") >= 512
    # No source photo: nothing to compare against, and no "Try another style" from a photo.
    expect(page.get_by_test_id("compare-before")).to_have_count(0)
    expect(page.get_by_test_id("try-another")).to_have_count(0)
    generation = Generation.objects.get(user=user)
    assert generation.media.get().persisted


def test_the_feed_shows_the_chosen_display_name_never_the_email(page):
    user = signed_in_user(page, "mila.jonsdottir@example.com")
    generation = finished_generation(user)
    Media.objects.filter(generation=generation).update(is_public=True)

    page.goto("/feed/")
    item = page.get_by_test_id("feed-item").first
    expect(item).to_contain_text(f"by {user.default_handle}")  # the neutral default

    page.goto("/accounts/")
    page.get_by_label("Display name").fill("Harbour painter")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_label("Display name")).to_have_value("Harbour painter")
    # The feed's first page is kept a second per process (generation/first_page.py); a
    # person takes longer than that to get there, this test does not: the second passes.
    first_page.kept.clear()

    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        page.goto("/feed/")
        expect(page.get_by_test_id("feed-item").first).to_contain_text("by Harbour painter")
        feed = page.locator("main").inner_text().lower()
        assert "mila" not in feed and "jonsdottir" not in feed and "@" not in feed
        page.get_by_test_id("feed-item").first.click()
        page.wait_for_url(re.compile(r"/i/"))
        shared = page.content().lower()
        assert "harbour painter" in shared
        assert "mila" not in shared and "jonsdottir" not in shared


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_history_and_feed_cards_show_the_whole_image(page, viewport):
    page.set_viewport_size(viewport)
    user = signed_in_user(page, f"whole-{viewport['width']}@example.com")
    tall = finished_generation(user, width=500, height=900)  # a tall portrait: a square crop would cut it
    Media.objects.filter(generation=tall).update(is_public=True)

    for path, tile in (("/history/", "history-item"), ("/feed/", "feed-item")):
        page.goto(path)
        image = page.get_by_test_id(tile).first.locator("img").first
        expect(image).to_have_js_property("complete", True)
        # The picture drawn inside the box: "contain" keeps all of it; anything else must
        # give the box the picture's own shape.
        fit, box_ratio = image.evaluate("img => [getComputedStyle(img).objectFit, img.clientWidth / img.clientHeight]")
        assert fit in ("contain", "scale-down") or abs(box_ratio - 500 / 900) < 0.02, (path, fit, box_ratio)


def test_a_photo_with_too_many_pixels_is_refused_before_upload_in_the_servers_words(page, tmp_path, settings):
    settings.MAX_IMAGE_PIXELS = 2_000_000
    ghibli_tears()
    signed_in_user(page, "pixels@example.com")
    page.goto("/")
    big = tmp_path / "wide.png"
    big.write_bytes(_png(2000, 1200, (30, 60, 90)))

    page.set_input_files("#id_image", big)

    error = page.locator("[data-image-error]")
    # The very message the server gives for the same file.
    from generation.exceptions import ImageTooManyPixels

    with pytest.raises(ImageTooManyPixels) as refused:
        validate_image(big.read_bytes())
    expect(error).to_have_text(refused.value.message)
    assert page.locator("#id_image").evaluate("input => input.files.length") == 0


def test_the_ledger_shows_one_row_per_generation_and_paginates(page):
    user = signed_in_user(page, "ledger@example.com")
    for number in range(23):  # more grants than one page holds
        ledger.grant(user=user, amount=1, reason=CreditEntry.Reason.ADJUST, note=f"gift {number}")
    generation = finished_generation(user)
    ledger.reserve(user=user, generation=generation, amount=2)
    ledger.refund(generation=generation)

    page.goto("/accounts/")
    rows = page.get_by_test_id("ledger-row")
    expect(rows).to_have_count(20)
    # The reservation and its refund are one row, at the top (newest first), netting 0.
    expect(rows.first).to_contain_text("Generation refunded")
    expect(rows.first.locator("td").nth(1)).to_have_text("0")
    page.get_by_test_id("ledger-next").click()
    page.wait_for_url(re.compile(r"\?page=2"))
    expect(page.get_by_text("Page 2 of 2")).to_be_visible()
    expect(page.get_by_test_id("ledger-row").last).to_contain_text("Daily allowance")


def test_result_and_payment_pages_fit_a_phone_with_44px_targets_and_pass_axe(
    browser, live_server, settings, seeded_packs
):
    settings.STRIPE_SECRET_KEY = ""
    settings.OFFLINE_CHECKOUT = True
    # axe needs its script on the page: this context lets it in past the CSP.
    context = browser.new_context(viewport=PHONE, base_url=live_server.url, bypass_csp=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        user = signed_in_user(page, "tapper@example.com")
        generation = finished_generation(user)
        page.goto("/credits/")
        page.get_by_test_id("buy-starter").click()
        expect(page.get_by_test_id("test-pay")).to_be_visible()
        purchase = Purchase.objects.get(user=user)
        pages = [
            f"/g/{generation.pk}/",
            "/credits/",
            page.url.removeprefix(live_server.url),  # the offline test checkout
            f"/credits/purchases/{purchase.pk}/",
            f"/?preset={REALISTIC}",
            "/accounts/",  # the ledger's table scrolls inside its card
        ]
        for path in pages:
            for viewport in (PHONE, DESKTOP):
                page.set_viewport_size(viewport)
                page.goto(path)
                page.wait_for_load_state("networkidle")
                found = violations(page)
                assert not found, f"{path} at {viewport['width']} px: {found}"
            page.set_viewport_size(PHONE)
            page.goto(path)
            assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], f"{path} scrolls sideways"
            small = page.evaluate(
                """() => [...document.querySelectorAll('main button, main .button, main summary, main select, main input[type=range], .site-header a, .site-header button')]
                    .filter(el => el.offsetParent !== null)
                    .map(el => [el.textContent.trim().slice(0, 30) || el.className, el.getBoundingClientRect().height])
                    .filter(([, h]) => h < 44)"""
            )
            assert not small, f"{path}: tap targets under 44 px: {small}"
    finally:
        context.close()


def test_notify_opt_in_is_sent_with_the_generation(page, tmp_path):
    ghibli_tears()
    user = signed_in_user(page, "notify@example.com")
    page.goto("/")
    notify = page.get_by_label("Email me when it's done")
    expect(notify).not_to_be_checked()  # opt-in: off unless asked for
    page.set_input_files("#id_image", photo(tmp_path))
    page.get_by_test_id("preset-ghibli_tears").click()
    notify.check()
    page.get_by_test_id("start").click()
    page.wait_for_url(re.compile(r"/g/[0-9a-f-]{36}/$"))
    assert Generation.objects.get(user=user).notify is True
    expect(page.get_by_test_id("status-card")).to_be_visible()


def test_an_iphone_photo_is_accepted_and_converted(page, tmp_path):
    """Browsers cannot draw HEIC, so the page shows the file's name and lets the server
    convert it; the stored photo is an ordinary, upright JPEG."""
    ghibli_tears()
    user = signed_in_user(page, "iphone@example.com")
    heic = tmp_path / "IMG_0042.HEIC"
    heic.write_bytes(make_image_bytes(640, 480, format="HEIF"))
    page.goto("/")

    page.set_input_files("#id_image", heic)

    expect(page.locator("[data-dropzone-status]")).to_contain_text("IMG_0042.HEIC")
    expect(page.locator("[data-image-error]")).to_be_hidden()
    page.get_by_test_id("preset-ghibli_tears").click()
    page.get_by_test_id("start").click()
    page.wait_for_url(re.compile(r"/g/[0-9a-f-]{36}/$"))
    generation = Generation.objects.get(user=user)
    assert generation.source_image.name.endswith(".jpg")
    assert (generation.source_width, generation.source_height) == (640, 480)
