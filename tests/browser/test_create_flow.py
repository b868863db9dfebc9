"""A daily user's review of the creation flow, in real Chromium: what the studio, the
result page and history do for someone making images every day, at a desktop and a
phone width."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import DESKTOP
from tests.browser.test_result_and_forms import signed_in_user
from tests.browser.test_studio_flows import photo

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
