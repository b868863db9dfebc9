"""The acceptance flows in real Chromium: sign in, generate, watch, publish; run out of
credits; cancel and get the refund. They also take the README's screenshots."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from playwright.sync_api import expect

from credits import ledger
from credits.models import CreditEntry
from credits.selectors import balance_of
from generation import first_page
from generation.models import Generation
from presets.models import Preset
from presets.tests.factories import PresetFactory
from stefna.accounts.models import User
from tests.browser.conftest import PHONE, screenshot, sign_in

# Transactional: the live server thread and the worker process must see committed rows.
# `seeded_presets` (autouse, conftest) puts the data migration's presets back after an
# earlier transactional test flushed the tables.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

GHIBLI_TEARS = "ghibli_tears"
COST = settings.GENERATION_COST


def ghibli_tears() -> Preset:
    """Seeded by presets' data migration; created here only if that is missing."""
    preset, _ = Preset.objects.get_or_create(
        slug=GHIBLI_TEARS,
        defaults={
            "name": "Ghibli tears",
            "kind": Preset.Kind.GHIBLI_REACTION,
            "prompt": PresetFactory.prompt,
            "model_chain": ["fal-ai/ghiblify"],
        },
    )
    return preset


def photo(tmp_path):
    """A small synthetic portrait (sky, sun, hills, a figure): enough for the offline
    renderer to make something that reads as a picture in the screenshots."""
    from PIL import Image, ImageDraw

    width, height = 720, 900
    image = Image.new("RGB", (width, height))
    draw = ImageDraw.Draw(image)
    for y in range(height):  # an evening sky, warm at the horizon
        t = y / height
        draw.line([(0, y), (width, y)], fill=(int(70 + 180 * t), int(110 + 90 * t), int(200 - 60 * t)))
    draw.ellipse((470, 140, 610, 280), fill=(255, 214, 120))
    draw.polygon([(0, 640), (220, 520), (430, 620), (720, 500), (720, 900), (0, 900)], fill=(64, 120, 88))
    draw.ellipse((270, 330, 450, 530), fill=(236, 190, 160))  # head
    draw.ellipse((250, 300, 470, 420), fill=(60, 40, 36))  # hair
    draw.rounded_rectangle((200, 540, 520, 900), radius=120, fill=(190, 70, 80))  # shoulders
    path = tmp_path / "portrait.jpg"
    image.save(path, "JPEG", quality=90)
    return path


def start_generation(page, tmp_path, *, preset_slug: str = GHIBLI_TEARS) -> None:
    """Open the studio, choose a photo (preview shown) and pick a style."""
    page.goto("/")
    page.set_input_files("#id_image", photo(tmp_path))
    expect(page.locator("[data-preview]")).to_be_visible()
    page.get_by_test_id(f"preset-{preset_slug}").click()
    expect(page.locator(f'input[value="{preset_slug}"]')).to_be_checked()


def header_balance(page):
    return page.locator("#header-balance [data-testid=balance]")


def test_sign_in_generate_watch_it_finish_and_publish_it(page, start_worker, tmp_path):
    preset = ghibli_tears()
    start_worker()
    sign_in(page, "demo@example.com")
    expect(page.get_by_test_id("studio-balance")).to_have_text(str(settings.DAILY_CREDITS))

    start_generation(page, tmp_path)
    expect(page.get_by_text(f"{COST} credits").first).to_be_visible()
    screenshot(page, "studio", full_page=False)
    page.get_by_test_id("start").click()

    page.wait_for_url(re.compile(r"/g/[0-9a-f-]{36}/$"))
    card = page.get_by_test_id("status-card")
    expect(card).to_be_visible()
    expect(header_balance(page)).to_have_text(str(settings.DAILY_CREDITS - COST))
    # The card polls by itself: no reload from here until it is done.
    expect(card).to_have_attribute("data-status", re.compile("queued|running"))
    expect(card).to_have_attribute("data-status", "succeeded", timeout=45_000)
    expect(page.get_by_test_id("status")).to_have_text("Succeeded")
    expect(page.locator("[data-status-announcer]")).to_have_text("Status: Succeeded")
    tile = page.get_by_test_id("media-tile").first
    result = tile.locator(".compare-after")
    expect(result).to_have_js_property("complete", True)
    assert result.evaluate("img => img.naturalWidth") > 0, "the result image did not load"
    screenshot(page, "status-done")

    generation = Generation.objects.get(user__email="demo@example.com", preset_slug=preset.slug)
    assert generation.status == Generation.Status.SUCCEEDED
    assert generation.preset_slug == preset.slug
    assert CreditEntry.objects.filter(generation=generation, reason=CreditEntry.Reason.CAPTURE).exists()

    # A second, public one in another style, so history and feed show some variety.
    second = (
        Preset.objects.filter(is_active=True, requires_prompt=False)
        .exclude(kind=preset.kind)
        .order_by("sort_order")
        .first()
    )
    if second is not None:
        start_generation(page, tmp_path, preset_slug=second.slug)
        page.get_by_label("Make my images public").check()
        page.get_by_test_id("start").click()
        page.wait_for_url(re.compile(r"/g/[0-9a-f-]{36}/$"))
        expect(page.get_by_test_id("status-card")).to_have_attribute("data-status", "succeeded", timeout=45_000)
    public_before = 1 if second is not None else 0

    page.goto("/history/")
    item = page.get_by_test_id("history-item").last
    expect(item).to_contain_text(preset.name)
    expect(item.get_by_test_id("history-status")).to_have_text("Succeeded")
    expect(item.get_by_test_id("visibility")).to_have_text("Private")

    page.goto("/feed/")
    expect(page.get_by_test_id("feed-item")).to_have_count(public_before)

    page.goto("/history/")
    item = page.get_by_test_id("history-item").last  # the first generation: oldest is last
    item.get_by_test_id("toggle-public").click()  # htmx swaps the tile in place
    expect(item.get_by_test_id("visibility")).to_have_text("Public")
    screenshot(page, "history")

    # The feed's first page is kept a second per process (generation/first_page.py), so an
    # image made public shows up to a second later; this test gets there sooner: it passes.
    first_page.kept.clear()
    page.goto("/feed/")
    feed_items = page.get_by_test_id("feed-item")
    expect(feed_items).to_have_count(public_before + 1)
    expect(feed_items.last).to_contain_text(preset.name)
    # The author is a neutral handle, never a part of the email.
    author = User.objects.get(email="demo@example.com").public_name
    assert author.startswith("artist-")
    expect(feed_items.last).to_contain_text(f"by {author}")
    expect(page.get_by_test_id("feed-grid")).not_to_contain_text("demo")
    screenshot(page, "feed")

    feed_items.last.click()
    page.wait_for_url(re.compile(r"/i/[A-Za-z0-9_-]{22}$"))
    og_image = page.locator('meta[property="og:image"]').get_attribute("content")
    assert og_image.startswith("http://") and "/media/" in og_image
    screenshot(page, "share", full_page=False)


def test_running_out_of_credits_is_explained_with_the_next_reset(page, live_server):
    ghibli_tears()
    sign_in(page, "demo@example.com")
    user = User.objects.get(email="demo@example.com")
    ledger.grant(
        user=user, amount=-balance_of(user=user), reason=CreditEntry.Reason.ADJUST, note="test: spend everything"
    )

    page.goto("/")
    notice = page.get_by_test_id("insufficient-credits")
    expect(notice).to_be_visible()
    expect(notice).to_contain_text("You're out of credits for today")
    expect(notice).to_contain_text(f"A generation costs {COST} credits and you have 0")
    expect(notice).to_contain_text(f"{ledger.next_reset():%H:%M} UTC")
    # Explained before any upload: there is no file input to fill in.
    expect(page.locator("#id_image")).to_have_count(0)
    expect(header_balance(page)).to_have_text("0")
    screenshot(page, "out-of-credits", full_page=False)


def test_running_out_between_opening_the_studio_and_submitting(page, live_server, tmp_path):
    ghibli_tears()
    sign_in(page, "late@example.com")
    start_generation(page, tmp_path)
    user = User.objects.get(email="late@example.com")
    ledger.grant(
        user=user, amount=-balance_of(user=user), reason=CreditEntry.Reason.ADJUST, note="test: spent elsewhere"
    )

    page.get_by_test_id("start").click()
    expect(page.get_by_test_id("form-error")).to_contain_text(f"This costs {COST} credits and you have 0")
    expect(page.get_by_test_id("insufficient-credits")).to_be_visible()
    assert not Generation.objects.filter(user=user).exists()


def test_cancel_a_running_job_and_see_the_refund(page, start_worker, tmp_path):
    ghibli_tears()
    # Slow offline timings keep the job running long enough to cancel it.
    start_worker(OFFLINE_QUEUE_SECONDS="1", OFFLINE_RUN_SECONDS="120")
    sign_in(page, "demo@example.com")
    start_generation(page, tmp_path)
    page.get_by_test_id("start").click()
    page.wait_for_url(re.compile(r"/g/[0-9a-f-]{36}/$"))

    card = page.get_by_test_id("status-card")
    expect(card).to_have_attribute("data-status", "running", timeout=30_000)
    expect(page.get_by_test_id("model")).not_to_be_empty()
    expect(header_balance(page)).to_have_text(str(settings.DAILY_CREDITS - COST))
    screenshot(page, "status-running", full_page=False)

    page.get_by_test_id("cancel").click()
    expect(card).to_have_attribute("data-status", "canceled")
    expect(page.get_by_test_id("refund")).to_have_text(f"Your {COST} credits were refunded.")
    # The header balance was swapped out of band with the card: no reload needed.
    expect(header_balance(page)).to_have_text(str(settings.DAILY_CREDITS))

    generation = Generation.objects.get(user__email="demo@example.com")
    assert generation.status == Generation.Status.CANCELED
    assert CreditEntry.objects.filter(generation=generation, reason=CreditEntry.Reason.REFUND).count() == 1

    # Removing it from history is an htmx swap after a confirmation.
    page.goto("/history/")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_test_id("history-item").first.get_by_test_id("more").click()
    page.get_by_role("button", name="Delete from history").click()
    expect(page.get_by_test_id("history-item")).to_have_count(0)
    assert Generation.objects.get(pk=generation.pk).deleted_at is not None

    # The account's ledger tells the same story, one row per generation: the allowance,
    # then the generation with its reservation and refund folded into one row.
    page.goto("/accounts/")
    ledger_rows = page.locator("table.ledger tbody tr")
    expect(ledger_rows).to_have_count(2)
    expect(ledger_rows.first).to_contain_text("Generation refunded")
    expect(ledger_rows.first.locator("td").nth(1)).to_have_text("0")
    expect(ledger_rows.last).to_contain_text("Daily allowance")
    screenshot(page, "account", full_page=False)


def test_studio_by_keyboard_and_drag_and_drop(page, live_server):
    ghibli_tears()
    sign_in(page, "keys@example.com")
    page.goto("/")

    # Dropping a file on the zone fills the file input and shows the preview.
    page.evaluate(
        """async () => {
            const canvas = document.createElement("canvas");
            canvas.width = 64; canvas.height = 64;
            canvas.getContext("2d").fillRect(0, 0, 64, 64);
            const blob = await new Promise(done => canvas.toBlob(done, "image/png"));
            const transfer = new DataTransfer();
            transfer.items.add(new File([blob], "dropped.png", {type: "image/png"}));
            const zone = document.querySelector("[data-dropzone]");
            zone.dispatchEvent(new DragEvent("dragover", {dataTransfer: transfer, bubbles: true, cancelable: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }"""
    )
    expect(page.locator("[data-preview]")).to_be_visible()
    assert page.locator("#id_image").evaluate("input => input.files[0].name") == "dropped.png"

    # The style grid is radio inputs: reachable and selectable from the keyboard.
    prompt = page.get_by_label("Describe what you want to see")
    expect(prompt).to_be_hidden()
    prompted = Preset.objects.filter(is_active=True, requires_prompt=True).order_by("sort_order").first()
    if prompted is None:
        prompted = PresetFactory(slug="needs-words", name="Needs words", requires_prompt=True, prompt="{prompt}")
        page.reload()
    radio = page.locator(f'input[name="preset"][value="{prompted.slug}"]')
    radio.focus()
    page.keyboard.press("Space")
    expect(radio).to_be_checked()
    # A style that needs a prompt shows the field, with a live character counter.
    expect(prompt).to_be_visible()
    prompt.fill("a lighthouse in the rain")
    expect(page.locator("[data-counter]")).to_have_text(f"24 / {settings.MAX_PROMPT_CHARS} characters")

    page.locator(f'input[name="preset"][value="{GHIBLI_TEARS}"]').focus()
    page.keyboard.press("Space")
    expect(prompt).to_be_hidden()  # a style without a prompt hides (and won't send) it


def test_a_link_with_a_style_names_it_on_top_and_its_card_is_in_sight_in_a_phones_row(page, live_server):
    # The last style of the longest kind: on a phone its row scrolls sideways, and the
    # card starts out of sight to the right.
    from generation.views import preset_groups

    _kind, presets = max(preset_groups(), key=lambda group: len(group[1]))
    assert len(presets) >= 3, "the seeded styles have a kind long enough to scroll"
    chosen = presets[-1]
    sign_in(page, "deep-link@example.com")
    page.set_viewport_size(PHONE)
    page.goto(f"/?preset={chosen.slug}")

    notice = page.get_by_test_id("style-from-link")
    expect(notice).to_be_in_viewport()
    expect(notice).to_contain_text(chosen.name)
    assert page.evaluate("window.scrollY") == 0, "the page itself is not scrolled"
    card = page.get_by_test_id(f"preset-{chosen.slug}")
    expect(card.locator("input")).to_be_checked()
    inside = card.evaluate(
        """card => {
            const row = card.closest(".preset-grid").getBoundingClientRect();
            const box = card.getBoundingClientRect();
            return box.left >= row.left - 1 && box.right <= row.right + 1;
        }"""
    )
    assert inside, "the chosen card is scrolled into its row's view"

    page.get_by_test_id("pick-another-style").click()
    expect(page.locator("#styles legend")).to_be_in_viewport()
