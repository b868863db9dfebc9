"""The studio by keyboard and at a glance, in real Chromium: Create on the first screen of
a desktop, and as few tab stops as the choices need on a phone."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from stefna.accounts.models import User
from tests.browser.conftest import PHONE
from tests.browser.test_account_pages import signed_in_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LAPTOP = {"width": 1280, "height": 800}
# What the keyboard lands on, in order, from the photo to Create.
TAB_STOP = """() => {
  const el = document.activeElement;
  return el.name ? `${el.name}=${el.value}` : el.getAttribute('data-testid') || el.tagName + '.' + el.className;
}"""


def tab_stops(page, *, first: str, last: str, most: int = 40) -> list[str]:
    page.locator(first).focus()
    stops = [page.evaluate(TAB_STOP)]
    while not page.locator(last).evaluate("el => el === document.activeElement") and len(stops) < most:
        page.keyboard.press("Tab")
        stops.append(page.evaluate(TAB_STOP))
    return stops


def bottom(box) -> float:
    return box["y"] + box["height"]


def test_on_a_laptop_create_is_on_the_first_screen_and_covers_no_field(browser, live_server):
    """At 1280×800 Create sat about 500 px below the first screen, under the photo and
    Finish. The chosen style and Create now stick to the bottom of the window; the keyboard
    meets them after every choice, each field it reaches is scrolled clear of the bar, and at
    the end of the form the bar rests under the last style and the last field."""
    user = User.objects.create_user(email="laptop@example.com")
    context, page = signed_in_page(browser, live_server, user, viewport=LAPTOP)
    page.goto("/")
    bar = page.locator("[data-submit-bar]")
    start = page.get_by_test_id("start")

    assert page.evaluate("window.scrollY") == 0
    for element in (start, page.locator("[data-chosen-style]")):
        box = element.bounding_box()
        assert box["y"] >= 0 and bottom(box) <= LAPTOP["height"], box
    expect(bar).to_contain_text("No style picked yet")
    assert bottom(page.locator(".studio-photo").bounding_box()) <= bar.bounding_box()["y"], "the photo step is whole"
    # The bar stands over the styles column only: across the whole width it covered the top
    # of Finish (its heading, drawn faintly through the bar) where the first screen ends.
    finish = page.locator(".studio-finish").bounding_box()
    assert finish["y"] < LAPTOP["height"], "Finish begins on the first screen"
    assert bar.bounding_box()["x"] >= finish["x"] + finish["width"], (bar.bounding_box(), finish)
    styles = page.locator("#styles").bounding_box()
    assert abs(bar.bounding_box()["x"] - styles["x"]) <= 1 and abs(bar.bounding_box()["width"] - styles["width"]) <= 1

    stops = tab_stops(page, first="#id_image", last='[data-testid="start"]')
    assert stops == ["image=", "preset=ghibli_tears", "is_public=on", "notify=on", "start"], stops
    for name in ("is_public", "notify"):  # reached by Tab, each is scrolled clear of the bar
        page.locator(f'input[name="{name}"]').focus()
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Tab")
        label = page.locator(f'label.checkbox:has(input[name="{name}"])').bounding_box()
        assert bottom(label) <= bar.bounding_box()["y"], (name, label, bar.bounding_box())

    page.get_by_test_id("preset-custom_prompt").click()  # far down the list, and it needs a prompt
    page.wait_for_timeout(150)  # the sticky Finish settles after the scroll to the card
    expect(bar).to_contain_text("Custom prompt")
    for element in (page.get_by_test_id("preset-custom_prompt"), page.locator("#id_prompt")):
        box = element.bounding_box()
        assert box["y"] >= 0 and bottom(box) <= bar.bounding_box()["y"], box
    assert bottom(start.bounding_box()) <= LAPTOP["height"]

    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    page.wait_for_timeout(100)
    resting = bar.bounding_box()
    for element in (
        page.locator("#styles"),
        page.locator(".studio-finish"),
        page.get_by_test_id("preset-image_to_image"),
    ):
        assert bottom(element.bounding_box()) <= resting["y"], (element, element.bounding_box(), resting)
    context.close()


@pytest.mark.parametrize("chosen", ["", "emotion_surprise"], ids=["no-style-yet", "a-style-in-a-later-row"])
def test_on_a_phone_the_styles_are_one_tab_stop_not_one_per_row(browser, live_server, chosen):
    """Chromium makes a sideways scroller with no tab stop inside a tab stop of its own:
    every row of styles but the chosen one's was one more stop on the way to Create. The
    styles are one radio group: one stop, the arrow keys move the choice."""
    user = User.objects.create_user(email=f"tabs-{chosen or 'none'}@example.com")
    context, page = signed_in_page(browser, live_server, user, viewport=PHONE)
    page.goto(f"/?preset={chosen}" if chosen else "/")
    rows = page.locator("#styles .preset-grid")
    assert rows.count() >= 4
    assert sum(row.evaluate("el => el.scrollWidth > el.clientWidth") for row in rows.all()) >= 3, "rows scroll"

    stops = tab_stops(page, first="#id_image", last='[data-testid="start"]')

    assert stops == ["image=", f"preset={chosen or 'ghibli_tears'}", "is_public=on", "notify=on", "start"], stops
    page.locator('input[name="preset"]:checked' if chosen else 'input[name="preset"]').first.focus()
    page.keyboard.press("ArrowRight")
    moved = page.locator('input[name="preset"]:checked')
    expect(moved).to_be_focused()
    expect(page.locator("[data-submit-bar]")).to_contain_text(moved.get_attribute("data-name"))
    context.close()


def test_signed_out_each_showcase_row_is_a_stop_to_scroll_it_by_keyboard(page):
    """The signed-out showcase has nothing to pick: each sideways row stays one tab stop,
    so the keyboard can scroll it."""
    page.set_viewport_size(PHONE)
    page.goto("/")
    rows = page.locator(".preset-showcase")
    rows.first.focus()
    for index in range(1, rows.count()):
        page.keyboard.press("Tab")
        expect(rows.nth(index)).to_be_focused()


@pytest.mark.parametrize(("language", "title"), [("en", "Ghibli tears"), ("id", "Ghibli haru")])
def test_on_a_phone_a_running_cards_title_is_not_squeezed_by_its_status(browser, live_server, language, title):
    """The photo, the title and the status pill shared one row: in Indonesian the pill
    ("Sedang diproses") left the title a third of it, and "Ghibli haru" and its kind
    broke over two lines each. The pill now wraps below the title."""
    from generation.models import Generation
    from tests.browser.test_result_and_forms import finished_generation

    user = User.objects.create_user(email=f"running-{language}@example.com", language=language)
    running = finished_generation(user, status=Generation.Status.RUNNING)
    context, page = signed_in_page(browser, live_server, user, viewport=PHONE)
    page.goto(f"/g/{running.pk}/")

    heading = page.locator(".status-title")
    expect(heading).to_have_text(title)
    for element in (heading, page.locator(".status-head .eyebrow")):
        lines = element.evaluate(
            "el => { const r = document.createRange(); r.selectNodeContents(el); return r.getClientRects().length; }"
        )
        assert lines == 1, f"{element} is set on {lines} lines"
    pill = page.get_by_test_id("status").bounding_box()
    text = page.locator(".status-head-text").bounding_box()
    assert pill["y"] >= bottom(text) or pill["x"] >= text["x"] + text["width"], (pill, text)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    context.close()
