"""A daily user's review of the creation flow, in real Chromium: what the studio, the
result page and history do for someone making images every day, at a desktop and a
phone width."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from credits import ledger
from generation.models import Generation, Media
from tests.browser.conftest import DESKTOP, PHONE
from tests.browser.test_result_and_forms import finished_generation, signed_in_user
from tests.browser.test_studio_flows import photo
from tests.images import make_image_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def in_view(page, locator) -> bool:
    """The whole of `locator` is inside the window, as the page is scrolled now."""
    box = locator.bounding_box()
    viewport = page.viewport_size
    return box is not None and box["y"] >= 0 and box["y"] + box["height"] <= viewport["height"]


@pytest.mark.parametrize(
    ("viewport", "style"),
    [(DESKTOP, "cartoon_3d"), ({"width": 1366, "height": 720}, "custom_prompt")],
    ids=["a-style-far-down", "a-prompt-style-on-a-short-screen"],
)
def test_on_a_desktop_create_is_in_sight_beside_the_style_just_picked(page, tmp_path, viewport, style):
    """Create sat in a grid row of its own under the whole catalogue of styles, a long
    scroll below the style just picked; now it sticks with Finish beside the styles, and a
    pair taller than the window (a prompt's field, a short screen) sticks by its bottom."""
    page.set_viewport_size(viewport)
    signed_in_user(page, "desktop-create@example.com")
    page.goto("/")
    page.set_input_files("#id_image", photo(tmp_path))

    page.get_by_test_id(f"preset-{style}").click()

    expect(page.locator(f'input[value="{style}"]')).to_be_checked()
    page.wait_for_timeout(100)  # the sticky pair settles after the scroll to the card
    assert in_view(page, page.get_by_test_id(f"preset-{style}"))
    assert in_view(page, page.get_by_test_id("start")), page.get_by_test_id("start").bounding_box()
    if style == "custom_prompt":
        assert in_view(page, page.locator("#id_prompt")), "the prompt this style needs is in sight too"


def test_an_iphone_photo_keeps_a_visible_box_with_its_name_and_a_way_to_replace_it(page, tmp_path):
    """Chromium cannot draw HEIC. The dropzone collapsed to a 2-px line with "Replace photo"
    clipped inside it, and after an earlier photo it went on showing that one as the
    preview of the new file."""
    signed_in_user(page, "heic-box@example.com")
    page.goto("/")
    zone = page.locator("[data-dropzone]")
    heic = tmp_path / "IMG_0042.HEIC"
    heic.write_bytes(make_image_bytes(640, 480, format="HEIF"))

    page.set_input_files("#id_image", photo(tmp_path))
    expect(page.locator("[data-preview]")).to_be_visible()
    page.set_input_files("#id_image", heic)

    note = page.get_by_test_id("photo-without-preview")
    expect(note).to_be_visible()
    expect(note).to_contain_text("IMG_0042.HEIC")
    expect(page.locator("[data-preview]")).to_be_hidden()  # not the earlier photo
    assert zone.bounding_box()["height"] > 150
    expect(zone.locator(".replace-hint")).to_be_visible()
    assert page.locator("#id_image").evaluate("input => input.files[0].name") == "IMG_0042.HEIC"


def test_a_refused_file_leaves_the_photo_chosen_before_in_place_and_it_is_sent(page, tmp_path):
    """A wrong file picked after a good photo emptied the file input (dropping the good
    photo) and revoked the good photo's preview (a broken image): Create then answered
    that the file was unreadable. The good photo stays, shown and sent."""
    user = signed_in_user(page, "refused-after-good@example.com")
    page.goto("/")
    page.set_input_files("#id_image", photo(tmp_path))
    expect(page.locator("[data-preview]")).to_be_visible()
    notes = tmp_path / "notes.jpg"
    notes.write_text("this is not a photo")

    page.set_input_files("#id_image", notes)

    expect(page.locator("[data-image-error]")).to_contain_text("That file isn't an image we can read.")
    preview = page.locator("[data-preview]")
    expect(preview).to_be_visible()
    page.wait_for_function("() => document.querySelector('[data-preview]').complete")
    assert preview.evaluate("img => img.naturalWidth") > 0, "the preview is a broken image"
    expect(page.locator("[data-dropzone-status]")).to_contain_text("portrait.jpg")
    assert page.locator("#id_image").evaluate("input => input.files[0] && input.files[0].name") == "portrait.jpg"

    page.get_by_test_id("preset-ghibli_tears").click()
    page.get_by_test_id("start").click()
    page.wait_for_url(re.compile(r"/g/[0-9a-f-]{36}/$"))
    assert Generation.objects.get(user=user).source_width == 720


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_create_with_no_style_or_an_empty_prompt_points_at_the_field_without_uploading(page, tmp_path, viewport):
    """Both came back from the server only after the whole photo went up, and on a phone
    the prompt a style needs is a long scroll below the styles, out of sight."""
    page.set_viewport_size(viewport)
    signed_in_user(page, f"checked-here-{viewport['width']}@example.com")
    page.goto("/")
    page.set_input_files("#id_image", photo(tmp_path))
    posts: list[str] = []
    page.on("request", lambda request: posts.append(request.url) if request.method == "POST" else None)

    page.get_by_test_id("start").click()

    styles = page.locator("#styles")
    expect(styles).to_be_focused()
    expect(page.locator("#preset-error")).to_have_text("Pick a style.")
    expect(styles).to_have_attribute("aria-describedby", "preset-error")
    page.get_by_test_id("preset-custom_prompt").click()
    expect(page.locator("#preset-error")).to_be_hidden()

    page.get_by_test_id("start").click()

    prompt = page.locator("#id_prompt")
    expect(prompt).to_be_focused()
    expect(page.locator("#prompt-error")).to_have_text("This style needs a prompt: describe what you want to see.")
    assert in_view(page, prompt)
    bar = page.locator("[data-submit-bar]").bounding_box()
    assert prompt.bounding_box()["y"] + prompt.bounding_box()["height"] <= bar["y"] or viewport == DESKTOP
    assert posts == [], "nothing was sent"
    prompt.fill("a lighthouse at dusk")
    expect(page.locator("#prompt-error")).to_be_hidden()

    page.get_by_test_id("start").click()
    page.wait_for_url(re.compile(r"/g/[0-9a-f-]{36}/$"))


def focused(page) -> str:
    return page.evaluate("document.activeElement === document.body ? 'body' : document.activeElement.outerHTML")


def test_by_keyboard_publishing_and_deleting_keep_the_users_place(page):
    """Each of these swapped the focused control away and left focus on <body>: the next
    Tab started again at the top of the page."""
    page.on("dialog", lambda dialog: dialog.accept())
    user = signed_in_user(page, "keyboard-place@example.com")
    older, newer = finished_generation(user), finished_generation(user)

    # The result page: Make public, by keyboard, stays on the button in its new state.
    page.goto(f"/g/{newer.pk}/")
    page.get_by_test_id("toggle-public").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("visibility")).to_have_text("Public")
    expect(page.get_by_test_id("toggle-public")).to_be_focused()
    expect(page.get_by_test_id("toggle-public")).to_have_text("Make private")
    # htmx settles a swap 20 ms after it (its `htmx-settling` class): a person's next key
    # comes later than that, Playwright's can come before.
    expect(page.locator(".htmx-settling, .htmx-request")).to_have_count(0)

    # Its last image deleted from the "⋯" menu: focus goes to the card's title.
    page.get_by_test_id("more").focus()
    page.keyboard.press("Enter")
    page.get_by_test_id("delete-image").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("media-placeholder")).to_be_visible()
    expect(page.locator(".status-title")).to_be_focused()

    # History: a generation deleted from its menu hands focus to the next one.
    page.goto("/history/")
    first = page.get_by_test_id("history-item").first
    expect(first).to_have_attribute("id", f"history-{newer.pk}")
    first.locator("summary[data-testid=more]").last.focus()
    page.keyboard.press("Enter")
    first.get_by_test_id("delete-generation").focus()
    page.keyboard.press("Enter")
    expect(page.locator(f"#history-{newer.pk}")).to_have_count(0)
    next_item = page.locator(f"#history-{older.pk}")
    page.wait_for_function("() => document.activeElement !== document.body")
    assert next_item.evaluate("item => item.contains(document.activeElement)"), focused(page)


def test_history_shows_a_result_when_it_is_ready_without_a_reload(page):
    """A generation still running showed "In progress…" on the history page until the
    person reloaded it; the card now fetches itself until the generation ends."""
    user = signed_in_user(page, "history-live@example.com")
    running = finished_generation(user, status=Generation.Status.RUNNING)
    page.goto("/history/")
    card = page.locator(f"#history-{running.pk}")
    expect(card.get_by_test_id("media-placeholder")).to_contain_text("In progress")
    expect(page).to_have_title(re.compile(r"^⏳ 1 running · "))

    finished = finished_generation(user)  # its image, stored as the pipeline stores one
    Media.objects.filter(generation=finished).update(generation=running)
    Generation.objects.filter(pk=running.pk).update(status=Generation.Status.SUCCEEDED)

    expect(card).to_have_attribute("data-status", "succeeded", timeout=10_000)
    expect(card.get_by_test_id("media-tile")).to_be_visible()
    expect(card.get_by_test_id("try-another")).to_be_visible()
    expect(page).not_to_have_title(re.compile("running"))


def test_a_running_history_card_that_did_not_change_keeps_the_keyboards_place(page):
    """The card asks for itself every 3 s. Unchanged, it is answered 304 and the browser
    hands htmx the same card from its cache; swapping that in again took the focus from
    its Open button every 3 s."""
    user = signed_in_user(page, "history-focus@example.com")
    running = finished_generation(user, status=Generation.Status.RUNNING)
    polls = []
    page.on(
        "response",
        lambda response: polls.append(response.status) if "/history-item/" in response.url else None,
    )
    page.goto("/history/")
    card = page.locator(f"#history-{running.pk}")
    card.evaluate("card => { card.dataset.mark = 'first render'; }")
    opener = card.get_by_role("link", name="Open")
    opener.focus()

    for _ in range(2):  # two of the card's 3-s polls, each answered and handled
        with page.expect_response(lambda response: "/history-item/" in response.url, timeout=10_000):
            pass
    page.wait_for_timeout(200)

    assert len(polls) >= 2 and set(polls) <= {200, 304}, polls
    assert card.get_attribute("data-mark") == "first render", "the same card was swapped in again"
    assert opener.evaluate("link => link === document.activeElement")


def test_on_a_desktop_the_result_and_its_download_button_fit_the_first_screen(page):
    """At 80% of the window's height the picture pushed Download, Share and Make public
    below the fold; it stays large and leaves them room."""
    user = signed_in_user(page, "first-screen@example.com")
    generation = finished_generation(user)  # 600×800, portrait
    page.goto(f"/g/{generation.pk}/")

    after = page.locator(".compare-after")
    expect(after).to_have_js_property("complete", True)
    assert after.bounding_box()["height"] >= 500
    assert in_view(page, page.get_by_test_id("download")), page.get_by_test_id("download").bounding_box()
    assert in_view(page, page.get_by_test_id("toggle-public"))


def test_on_a_phone_arrow_keys_bring_the_chosen_style_into_sight(page):
    """The arrow keys chose a card off the side of its sideways row (or under the Create
    bar) and left it there, unseen."""
    page.set_viewport_size(PHONE)
    signed_in_user(page, "arrows@example.com")
    page.goto("/")
    page.locator('input[name="preset"]').first.focus()
    bar = page.locator("[data-submit-bar]")

    for slug in ("ghibli_shock", "ghibli_sparkle", "emotion_joy", "emotion_sadness"):
        page.keyboard.press("ArrowRight")
        expect(page.locator(f'input[value="{slug}"]')).to_be_checked()
        expect(bar).to_contain_text(page.locator(f'input[value="{slug}"]').get_attribute("data-name"))
        card = page.get_by_test_id(f"preset-{slug}").bounding_box()
        assert card["x"] >= 0 and card["x"] + card["width"] <= PHONE["width"], (slug, card)
        header = page.locator(".site-header").bounding_box()
        assert card["y"] >= header["y"] + header["height"], (slug, card, "under the header")
        assert card["y"] + card["height"] <= bar.bounding_box()["y"], (slug, card, "under the Create bar")


def test_on_a_phone_the_field_to_fix_is_brought_clear_of_the_header_and_the_create_bar(page):
    """focus() scrolled only a field wholly out of sight: a prompt field peeking out under
    the Create bar stayed covered, and the styles' heading went under the header."""
    page.set_viewport_size(PHONE)
    signed_in_user(page, "clear-of-bars@example.com")
    page.goto("/")
    header = page.locator(".site-header")
    bar = page.locator("[data-submit-bar]")

    page.get_by_test_id("start").click()  # no style yet
    expect(page.locator("#styles")).to_be_focused()
    legend = page.locator("#styles legend").bounding_box()
    assert legend["y"] >= header.bounding_box()["y"] + header.bounding_box()["height"], legend

    page.get_by_test_id("preset-image_to_image").click()  # the last style: its prompt peeks out below
    page.get_by_test_id("start").click()
    prompt = page.locator("#id_prompt")
    expect(prompt).to_be_focused()
    box = prompt.bounding_box()
    assert box["y"] >= header.bounding_box()["y"] + header.bounding_box()["height"], box
    assert box["y"] + box["height"] <= bar.bounding_box()["y"], box


@pytest.mark.parametrize(("language", "label"), [("en", "Sign out"), ("id", "Keluar")])
def test_on_a_phone_the_headers_sign_out_reads_on_one_line(page, language, label):
    """ "Sign out" wrapped onto two lines at 390 px, beside the balance."""
    page.set_viewport_size(PHONE)
    user = signed_in_user(page, f"header-{language}@example.com")
    user.language = language  # a signed-in account's own language wins over the browser's
    user.save(update_fields=["language"])
    ledger.grant(user=user, amount=120, note="bought")  # a three-digit balance beside it
    page.goto("/")

    sign_out = page.locator(".site-header form.inline button")
    expect(sign_out).to_have_text(label)
    lines = sign_out.evaluate(
        "button => { const text = document.createRange(); text.selectNodeContents(button);"
        " return text.getClientRects().length; }"
    )
    assert lines == 1, f"the label is set on {lines} lines"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], "no sideways scrolling"
