"""axe-core on every page (no serious or critical violations) at 1280 px and 390 px,
plus keyboard reach, a visible focus ring and reduced motion.

axe-core's script is vendored (tests/browser/vendor/axe.min.js, MPL-2.0, from the npm
registry's axe-core package); the pages' CSP would refuse it inline, so these contexts
bypass CSP. The other browser tests keep the strict policy.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from django.core import mail
from playwright.sync_api import expect

from credits import ledger
from credits.models import CreditEntry
from credits.selectors import balance_of
from generation.models import Generation, Media
from stefna.accounts.models import User
from tests.browser.conftest import DESKTOP, PHONE, sign_in
from tests.browser.test_result_and_forms import finished_generation

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()


@pytest.fixture
def axe_page(browser, live_server):
    context = browser.new_context(viewport=DESKTOP, base_url=live_server.url, bypass_csp=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    yield page
    context.close()


def violations(page) -> list[dict]:
    page.add_script_tag(content=AXE)
    result = page.evaluate(
        """async () => {
            const r = await axe.run(document, {resultTypes: ["violations"]});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
        }"""
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]


def assert_accessible(page, path: str) -> None:
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.goto(path)
        page.wait_for_load_state("networkidle")
        found = violations(page)
        assert not found, f"{path} at {label}: {json.dumps(found, indent=1)}"


def test_every_public_page_passes_axe(axe_page):
    owner = User.objects.create_user("owner@example.com")
    generation = finished_generation(owner)
    media = Media.objects.get(generation=generation)
    Media.objects.filter(pk=media.pk).update(is_public=True)
    for path in ("/", "/feed/", "/accounts/sign-in/", f"/i/{media.pk}/", "/no-such-page/"):
        assert_accessible(axe_page, path)
    # The code page, reached the real way.
    mail.outbox.clear()
    axe_page.goto("/accounts/sign-in/")
    axe_page.get_by_label("Email address").fill("axe@example.com")
    axe_page.get_by_role("button", name="Email me a code").click()
    axe_page.wait_for_url("**/accounts/code/**")
    assert not violations(axe_page)


def test_every_signed_in_page_passes_axe(axe_page):
    sign_in(axe_page, "a11y@example.com")
    user = User.objects.get(email="a11y@example.com")
    generation = finished_generation(user)
    for path in ("/", f"/?source={generation.pk}", "/history/", "/history/?status=failed", f"/g/{generation.pk}/"):
        assert_accessible(axe_page, path)
    assert_accessible(axe_page, "/accounts/")
    # The studio refusing a submit (error summary) and the out-of-credits state.
    axe_page.goto("/")
    axe_page.get_by_test_id("start").click()
    expect(axe_page.get_by_test_id("error-summary")).to_be_focused()
    assert not violations(axe_page)
    ledger.grant(user=user, amount=-balance_of(user=user), reason=CreditEntry.Reason.ADJUST, note="test")
    assert_accessible(axe_page, "/")


def test_the_admin_passes_axe(axe_page):
    sign_in(axe_page, "staff@example.com")
    staff = User.objects.get(email="staff@example.com")
    User.objects.filter(pk=staff.pk).update(is_staff=True, is_superuser=True)
    generation = finished_generation(staff)
    for path in (
        "/admin/",
        "/admin/dashboard/",
        "/admin/generation/generation/",
        f"/admin/generation/generation/{generation.pk}/change/",
    ):
        assert_accessible(axe_page, path)


def test_the_admin_fits_and_names_itself(page):
    sign_in(page, "fit@example.com")
    staff = User.objects.get(email="fit@example.com")
    User.objects.filter(pk=staff.pk).update(is_staff=True, is_superuser=True)
    generation = finished_generation(staff)
    Generation.objects.filter(pk=generation.pk).update(parameters={"strength": 0.5, "steps": list(range(60))})

    page.goto("/admin/")
    expect(page).to_have_title(re.compile(r"Stefna admin$"))
    expect(page.locator("#site-name")).to_have_text("Stefna admin")
    icon = page.locator('link[rel="icon"]').get_attribute("href")
    assert page.request.get(icon).status == 200, "the favicon must exist on admin pages"
    # Index links wrap between words, never letter by letter.
    broken = page.evaluate(
        """() => [...document.querySelectorAll('#content-main a')].filter(a => {
              const words = a.textContent.trim().split(/ +/).length;
              const lines = Math.round(a.getBoundingClientRect().height / parseFloat(getComputedStyle(a).lineHeight || 16));
              return lines > words;
           }).map(a => a.textContent.trim())"""
    )
    assert not broken, broken

    page.goto("/admin/generation/generation/")
    overflow = page.evaluate(
        """() => [...document.querySelectorAll('#result_list thead th')]
              .filter(th => th.getBoundingClientRect().right > window.innerWidth).map(th => th.textContent.trim())"""
    )
    assert not overflow, f"columns off screen at 1280 px: {overflow}"

    page.goto(f"/admin/generation/generation/{generation.pk}/change/")
    json_box = page.locator("pre.stefna-json").first
    expect(json_box).to_contain_text('"strength": 0.5')
    assert json_box.evaluate("el => getComputedStyle(el).overflow") == "auto"
    assert json_box.evaluate("el => el.scrollHeight > el.clientHeight"), "long JSON scrolls inside its box"


def test_keyboard_reach_visible_focus_and_reduced_motion(page):
    sign_in(page, "keyboard@example.com")
    user = User.objects.get(email="keyboard@example.com")
    generation = finished_generation(user)
    page.goto(f"/g/{generation.pk}/")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    assert skip.evaluate("el => getComputedStyle(el).outlineStyle") != "none"
    # Every control of the result is reachable by Tab, each with a visible focus ring.
    reached = []
    for _ in range(40):
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.matches('.skip-link, body')"):
            break  # round the page once (or out into the browser's own controls)
        reached.append(
            page.evaluate(
                """() => { const el = document.activeElement;
                    const style = getComputedStyle(el.matches('.compare-range') ? el.parentElement : el);
                    return [el.getAttribute('data-testid') || el.textContent.trim().slice(0, 20),
                            style.outlineStyle !== 'none' || style.boxShadow !== 'none'] }"""
            )
        )
    names = [name for name, _ in reached]
    for wanted in ("compare-range", "download", "share", "toggle-public", "more", "try-another"):
        assert wanted in names, f"{wanted} not reachable by Tab: {names}"
    assert all(visible for _, visible in reached), f"focus not visible on: {[n for n, v in reached if not v]}"

    page.emulate_media(reduced_motion="reduce")
    page.goto("/feed/")
    assert page.evaluate("() => matchMedia('(prefers-reduced-motion: reduce)').matches")
    durations = page.evaluate(
        "() => [...document.querySelectorAll('a, button, img')].map(el => getComputedStyle(el).transitionDuration)"
    )
    assert all(value in ("0s", "") for value in durations), durations
