"""Issue 19 in real Chromium, at 1280 px and 390 px: the result first (before/after by
mouse and keyboard), the photo kept and used again, errors that help, filters in the
URL, the tab title, and phone-sized tap targets."""

from __future__ import annotations

import io
import re

import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from generation import storage
from generation.models import Generation, Media
from generation.tests.factories import AttemptFactory, GenerationFactory
from presets.models import Preset
from stefna.accounts.models import User
from tests.browser.conftest import DESKTOP, PHONE, screenshot, sign_in
from tests.browser.test_studio_flows import ghibli_tears, photo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _png(width: int, height: int, colour: tuple[int, int, int]) -> bytes:
    image = Image.new("RGB", (width, height), colour)
    ImageDraw.Draw(image).ellipse((width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=(250, 220, 90))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def finished_generation(user: User, *, status: str = Generation.Status.SUCCEEDED, width: int = 600, height: int = 800):
    """A generation with its source photo and one result in storage, as the pipeline names them."""
    preset = ghibli_tears()
    # Stored as the pipeline names files: /media/ answers only those, and only to the owner.
    source = default_storage.save(
        storage.source_name(extension="png"), ContentFile(_png(width, height, (60, 110, 200)))
    )
    generation = GenerationFactory.create(
        user=user,
        preset=preset,
        status=status,
        source_image=source,
        source_width=width,
        source_height=height,
        current_model="fal-ai/ghiblify",
        logs=[{"message": "Queued", "level": "info", "timestamp": "2026-01-01T00:00:00+00:00"}],
        completed_at=None if status in Generation.ACTIVE_STATUSES else None,
    )
    if status == Generation.Status.SUCCEEDED:
        name = default_storage.save(
            f"{storage.RESULTS_FOLDER}/{storage.result_name(generation.pk, 0)}.png",
            ContentFile(_png(width, height, (200, 90, 120))),
        )
        Media.objects.create(
            generation=generation,
            user=user,
            index=0,
            url=default_storage.url(name),
            storage_key=name,
            width=width,
            height=height,
            persisted=True,
            model="fal-ai/ghiblify",
        )
        AttemptFactory(generation=generation, model="fal-ai/ghiblify")
    return generation


def signed_in_user(page, email: str) -> User:
    sign_in(page, email)
    return User.objects.get(email=email)


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_result_is_the_hero_with_a_before_after_by_mouse_and_keyboard(page, viewport):
    page.set_viewport_size(viewport)
    user = signed_in_user(page, "hero@example.com")
    generation = finished_generation(user)
    page.goto(f"/g/{generation.pk}/")

    compare = page.get_by_test_id("compare")
    after = compare.locator(".compare-after")
    expect(after).to_have_js_property("complete", True)
    box = after.bounding_box()
    # Its own aspect ratio (600×800), large: no square crop.
    assert abs(box["width"] / box["height"] - 600 / 800) < 0.02, box
    if viewport is PHONE:
        assert box["width"] >= viewport["width"] - 60, "on a phone the image fills the width"
    else:
        assert box["height"] >= 500

    def split() -> float:
        return float(compare.evaluate("el => getComputedStyle(el).getPropertyValue('--split')").strip().rstrip("%"))

    assert split() == 50
    # Keyboard: the slider is a focusable range input.
    slider = page.get_by_test_id("compare-range")
    slider.focus()
    page.keyboard.press("Home")
    assert split() == 0
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert split() == 2
    page.keyboard.press("End")
    assert split() == 100
    # Mouse: a click at a quarter of the width moves the split there.
    frame = compare.bounding_box()
    page.mouse.click(frame["x"] + frame["width"] * 0.25, frame["y"] + frame["height"] / 2)
    assert abs(split() - 25) <= 2

    # Download, share and public/private one tap away; details folded.
    expect(page.get_by_test_id("download")).to_be_visible()
    expect(page.get_by_test_id("share")).to_be_visible()
    expect(page.get_by_test_id("toggle-public")).to_have_text("Make public")
    details = page.get_by_test_id("details")
    expect(details.get_by_test_id("prompt-sent")).to_be_hidden()
    details.locator("summary").click()
    expect(details.get_by_test_id("prompt-sent")).to_have_text(generation.prompt_sent)
    # Offline preview mode names the offline renderer, never the fal model alone.
    expect(details.get_by_test_id("attempts")).to_contain_text("offline preview renderer")
    expect(page).to_have_title(re.compile(r"^✓ Done · "))

    page.get_by_test_id("toggle-public").click()  # htmx swaps the figure in place
    expect(page.get_by_test_id("visibility")).to_have_text("Public")
    expect(page.get_by_test_id("compare")).to_be_visible()
    assert Media.objects.get(generation=generation).is_public


def test_try_another_style_starts_a_generation_without_a_new_upload(page):
    user = signed_in_user(page, "again@example.com")
    generation = finished_generation(user)
    other = Preset.objects.filter(is_active=True, requires_prompt=False).exclude(slug=generation.preset_slug).first()
    page.goto(f"/g/{generation.pk}/")

    page.get_by_test_id("try-another").click()
    page.wait_for_url(re.compile(rf"\?source={generation.pk}"))
    expect(page.locator(f'input[name="source_generation"][value="{generation.pk}"]')).to_be_checked()
    expect(page.locator("[data-preview]")).to_be_visible()
    assert page.locator("#id_image").evaluate("input => input.files.length") == 0
    page.get_by_test_id(f"preset-{other.slug}").click()
    page.get_by_label("Email me when it's done").check()
    page.get_by_test_id("start").click()

    page.wait_for_url(re.compile(r"/g/[0-9a-f-]{36}/$"))
    second = Generation.objects.exclude(pk=generation.pk).get(user=user)
    assert second.preset_slug == other.slug
    assert second.notify
    with default_storage.open(generation.source_image.name) as a, default_storage.open(second.source_image.name) as b:
        assert a.read() == b.read()


def test_the_photo_survives_a_missing_style_error_and_focus_goes_to_the_summary(page, tmp_path):
    ghibli_tears()
    signed_in_user(page, "demo@example.com")
    page.goto("/")
    page.set_input_files("#id_image", photo(tmp_path))
    expect(page.locator("[data-preview]")).to_be_visible()
    # No style picked, sent as a browser without scripts would (form.submit() skips the
    # page's own check, which stops this before the upload): the server's answer.
    page.locator("[data-studio-form]").evaluate("form => form.submit()")

    summary = page.get_by_test_id("error-summary")
    expect(summary).to_be_focused()
    screenshot(page, "studio-error", full_page=False)
    link = summary.get_by_role("link", name="Pick a style.")
    expect(link).to_have_attribute("href", "#styles")
    # The photo is still there (kept by the server), shown and sent again.
    preview = page.locator("[data-preview]")
    expect(preview).to_be_visible()
    assert preview.evaluate("img => img.naturalWidth") > 0
    link.click()
    page.get_by_test_id("preset-ghibli_tears").click()
    page.get_by_test_id("start").click()
    page.wait_for_url(re.compile(r"/g/[0-9a-f-]{36}/$"))
    assert Generation.objects.filter(user__email="demo@example.com").count() == 1


def test_files_are_checked_before_upload_with_the_servers_messages(page, tmp_path, settings):
    settings.MAX_UPLOAD_BYTES = 40_000
    ghibli_tears()
    signed_in_user(page, "checks@example.com")
    page.goto("/")
    error = page.locator("[data-image-error]")

    fake = tmp_path / "notes.jpg"
    fake.write_text("this is not a photo")
    page.set_input_files("#id_image", fake)
    expect(error).to_have_text("That file isn't an image we can read. Upload a JPEG, PNG, WebP, HEIC or AVIF photo.")
    assert page.locator("#id_image").evaluate("input => input.files.length") == 0

    big = tmp_path / "big.png"
    big.write_bytes(_png(1600, 1600, (10, 20, 30)) + b"\0" * 50_000)
    page.set_input_files("#id_image", big)
    expect(error).to_contain_text("That image is larger than")
    expect(page.locator("[data-preview]")).to_be_hidden()

    page.set_input_files("#id_image", photo(tmp_path))
    expect(error).to_be_hidden()
    expect(page.locator("[data-preview]")).to_be_visible()


def test_an_overlong_prompt_is_counted_and_refused_not_cut(page, tmp_path):
    ghibli_tears()
    prompted = Preset.objects.filter(is_active=True, requires_prompt=True).first()
    signed_in_user(page, "words@example.com")
    page.goto("/")
    page.set_input_files("#id_image", photo(tmp_path))
    page.get_by_test_id(f"preset-{prompted.slug}").click()
    prompt = page.get_by_label("Describe what you want to see")
    text = "lighthouse " * 200  # 2,200 characters, pasted at once
    prompt.fill(text)
    assert len(prompt.input_value()) == len(text), "the field must not cut a paste"
    expect(page.locator("[data-counter]")).to_have_text(f"{len(text)} / {settings.MAX_PROMPT_CHARS} characters")
    expect(page.locator("[data-prompt-error]")).to_have_text(
        f"The prompt is {len(text)} characters; the limit is {settings.MAX_PROMPT_CHARS}. Please shorten it."
    )
    page.get_by_test_id("start").click()
    expect(prompt).to_be_focused()
    assert not Generation.objects.exists()
    prompt.fill("a lighthouse in the rain")
    expect(page.locator("[data-prompt-error]")).to_be_hidden()


def test_history_filters_live_in_the_url_and_empty_states_match(page):
    user = signed_in_user(page, "filters@example.com")
    finished_generation(user)
    page.goto("/history/")
    expect(page.get_by_test_id("history-item")).to_have_count(1)

    page.get_by_label("Status").select_option("failed")
    page.wait_for_url(re.compile(r"status=failed"))
    empty = page.get_by_test_id("empty-state")
    expect(empty).to_contain_text("Nothing matches these filters.")
    expect(empty).to_contain_text("Failed")
    page.reload()
    expect(page.get_by_label("Status")).to_have_value("failed")
    expect(page.get_by_test_id("empty-state")).to_be_visible()

    page.go_back()
    page.wait_for_url(re.compile(r"/history/$"))
    expect(page.get_by_label("Status")).to_have_value("")
    expect(page.get_by_test_id("history-item")).to_have_count(1)
    page.go_forward()
    expect(page.get_by_label("Status")).to_have_value("failed")
    expect(page.get_by_test_id("history-item")).to_have_count(0)


def test_the_tab_title_shows_progress(page):
    user = signed_in_user(page, "title@example.com")
    running = finished_generation(user, status=Generation.Status.RUNNING)
    page.goto(f"/g/{running.pk}/")
    expect(page).to_have_title(re.compile(r"^⏳ 1 running · "))
    # The card polls by itself: when the job ends the title follows, no reload.
    Generation.objects.filter(pk=running.pk).update(status=Generation.Status.CANCELED)
    expect(page.get_by_test_id("status-card")).to_have_attribute("data-status", "canceled")
    expect(page).not_to_have_title(re.compile("running"))


def test_on_a_phone_the_create_bar_sticks_and_tap_targets_are_44px(page):
    page.set_viewport_size(PHONE)
    ghibli_tears()
    user = signed_in_user(page, "phone@example.com")
    finished_generation(user)
    page.goto("/")
    bar = page.locator("[data-submit-bar]")
    box = bar.bounding_box()
    assert box["y"] + box["height"] <= PHONE["height"] + 1 and box["y"] > PHONE["height"] - 140, box
    page.get_by_test_id("preset-ghibli_tears").click()
    expect(bar).to_contain_text("Ghibli tears")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "no sideways scrolling"

    for path in ("/", "/history/", "/feed/", "/accounts/"):
        page.goto(path)
        small = page.evaluate(
            """() => [...document.querySelectorAll('main button, main .button, main summary, main select, .site-header a, .site-header button')]
                .filter(el => el.offsetParent !== null)
                .map(el => [el.textContent.trim().slice(0, 30), el.getBoundingClientRect().height])
                .filter(([, h]) => h < 44)"""
        )
        assert not small, f"{path}: tap targets under 44 px: {small}"


def test_a_recent_photo_can_be_picked_again(page, tmp_path):
    user = signed_in_user(page, "recent@example.com")
    older = finished_generation(user, width=500, height=700)
    page.goto("/")
    recent = page.get_by_test_id("recent-photo")
    expect(recent).to_have_count(1)
    # A file chosen first, then the recent photo: the photo replaces the file.
    page.set_input_files("#id_image", photo(tmp_path))
    expect(page.locator("[data-preview]")).to_be_visible()
    recent.first.click()
    expect(page.locator(f'input[name="source_generation"][value="{older.pk}"]')).to_be_checked()
    assert page.locator("#id_image").evaluate("input => input.files.length") == 0
    assert page.locator("[data-preview]").get_attribute("src").endswith(older.source_image.url)
    page.get_by_test_id("preset-ghibli_tears").click()
    page.get_by_test_id("start").click()
    page.wait_for_url(re.compile(r"/g/[0-9a-f-]{36}/$"))
    newest = Generation.objects.filter(user=user).exclude(pk=older.pk).get()
    assert (newest.source_width, newest.source_height) == (500, 700)


def test_a_more_actions_menu_closes_on_escape_on_a_click_elsewhere_and_when_another_opens(page):
    """The ⋯ menus stayed open until their own button was pressed again: Escape did
    nothing, a tap elsewhere left the panel lying over the next card, and opening the
    next card's menu left two panels open on top of each other."""
    page.set_viewport_size(PHONE)
    user = signed_in_user(page, "menus@example.com")
    finished_generation(user)
    page.goto("/history/")
    menus = page.locator("details[data-menu]")
    expect(menus).to_have_count(2)  # the image's and the generation's
    first, second = menus.nth(0), menus.nth(1)
    is_open = "menu => menu.open"

    first.locator("summary").click()
    assert first.evaluate(is_open)
    page.keyboard.press("Escape")
    assert not first.evaluate(is_open), "Escape closes the menu"
    assert first.locator("summary").evaluate("summary => summary === document.activeElement"), "focus back on ⋯"

    first.locator("summary").click()
    page.get_by_role("heading", level=1).click()
    assert not first.evaluate(is_open), "a click elsewhere closes the menu"

    first.locator("summary").click()
    second.locator("summary").click()
    assert second.evaluate(is_open)
    assert not first.evaluate(is_open), "one menu open at a time"


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_error_summary_s_photo_link_brings_the_photo_box_into_sight(page, viewport):
    """Create with a style but no photo: the summary's "Choose a photo to transform." link
    jumps to the (visually hidden) file input, which sat in the middle of the drop box;
    the browser put it at the top of the window, so the drop box was scrolled up under the
    sticky header and only the error's own text showed."""
    page.set_viewport_size(viewport)
    ghibli_tears()
    signed_in_user(page, f"no-photo-{viewport['width']}@example.com")
    page.goto("/")
    page.get_by_test_id("preset-ghibli_tears").click()
    page.get_by_test_id("start").click()
    summary = page.get_by_test_id("error-summary")
    expect(summary).to_be_focused()

    summary.get_by_role("link").first.click()
    expect(page.locator("#id_image")).to_be_focused()
    page.wait_for_timeout(200)  # the jump is done

    header = page.locator(".site-header").bounding_box()
    zone = page.locator("[data-dropzone]").bounding_box()
    assert header["y"] + header["height"] <= zone["y"], f"the drop box starts at y={zone['y']:.0f}, under the header"
    assert zone["y"] + zone["height"] <= viewport["height"], "the whole drop box is in the window"


def test_the_folded_details_on_the_result_page_show_they_open(page):
    """The result page's "Details" fold had lost the browser's ▸ marker (its summary is a
    flex box, to be 44 px high): it read as a grey label nobody would think to press."""
    user = signed_in_user(page, "folded@example.com")
    generation = finished_generation(user)
    page.goto(f"/g/{generation.pk}/")
    details = page.get_by_test_id("details")
    summary = details.locator("summary")
    expect(summary).to_have_text("Details")
    marker = "(el) => { const s = getComputedStyle(el); const m = getComputedStyle(el, '::before'); return s.display === 'list-item' ? 'marker' : m.content === 'none' ? null : m.transform; }"

    closed = summary.evaluate(marker)
    assert closed is not None, "no disclosure marker on the summary"
    summary.click()
    expect(details).to_have_attribute("open", "")
    assert summary.evaluate(marker) != closed or closed == "marker", "the marker turns when the fold opens"
