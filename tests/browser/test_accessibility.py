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
from tests.browser.test_studio_flows import ghibli_tears, photo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

AXE = (Path(__file__).parent / "vendor" / "axe.min.js").read_text()


SERIOUS = ("serious", "critical")
# The site's own pages are held to every rule axe has, of any impact (a page without a
# heading, two regions with one name, an image whose alt repeats its link's text); the
# admin is Django's and keeps to the serious ones.
EVERY_IMPACT = ("minor", "moderate", *SERIOUS)


def new_axe_page(browser, live_server, locale: str = "en-US"):
    context = browser.new_context(viewport=DESKTOP, base_url=live_server.url, bypass_csp=True, locale=locale)
    context.set_default_timeout(15_000)
    return context, context.new_page()


@pytest.fixture
def axe_page(browser, live_server):
    context, page = new_axe_page(browser, live_server)
    yield page
    context.close()


@pytest.fixture(params=["en-US", "id-ID"], ids=["english", "indonesian"])
def site_axe_page(request, browser, live_server):
    """The site's pages in each language it speaks (the browser asks for it)."""
    context, page = new_axe_page(browser, live_server, request.param)
    page.language = request.param.split("-")[0]  # type: ignore[attr-defined]
    yield page
    context.close()


def violations(page, impacts: tuple[str, ...] = SERIOUS) -> list[dict]:
    page.add_script_tag(content=AXE)
    result = page.evaluate(
        """async () => {
            const r = await axe.run(document, {resultTypes: ["violations"]});
            return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                nodes: v.nodes.slice(0, 3).map(n => n.target.join(" "))}));
        }"""
    )
    return [v for v in result if v["impact"] in impacts]


def assert_accessible(page, path: str, *, impacts: tuple[str, ...] = SERIOUS) -> None:
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.goto(path)
        page.wait_for_load_state("networkidle")
        found = violations(page, impacts)
        assert not found, f"{path} at {label}: {json.dumps(found, indent=1)}"
        language = getattr(page, "language", None)
        if language:
            assert page.locator("html").get_attribute("lang") == language, f"{path} at {label}"


def assert_site_accessible(page, path: str | None = None) -> None:
    """Every impact, at both widths; `path=None` checks the page as it is, once."""
    if path is not None:
        assert_accessible(page, path, impacts=EVERY_IMPACT)
        return
    found = violations(page, EVERY_IMPACT)
    assert not found, f"{page.url}: {json.dumps(found, indent=1)}"
    assert page.locator("html").get_attribute("lang") == page.language


def sign_in_by_code(page, email: str) -> None:
    """The email-code sign-in, by its fields rather than their English labels (any language)."""
    mail.outbox.clear()
    page.goto("/accounts/sign-in/")
    page.locator("#email").fill(email)
    page.locator("main form button[type=submit]").first.click()
    page.wait_for_url(re.compile(r"/accounts/code/"))
    code = re.search(r"\b(\d{6})\b", str(mail.outbox[-1].subject)).group(1)  # type: ignore[union-attr]
    page.locator("#code").fill(code)
    page.locator("main form button[type=submit]").first.click()
    page.wait_for_url(lambda url: "/accounts/" not in url)


def test_every_public_page_passes_axe(site_axe_page, settings):
    page = site_axe_page
    owner = User.objects.create_user("owner@example.com")
    generation = finished_generation(owner)
    media = Media.objects.get(generation=generation)
    Media.objects.filter(pk=media.pk).update(is_public=True)
    for path in ("/", "/feed/", "/accounts/sign-in/", f"/i/{media.pk}/", "/no-such-page/"):
        assert_site_accessible(page, path)
    # The code page, reached the real way; a wrong code; then too many tries (429).
    mail.outbox.clear()
    page.goto("/accounts/sign-in/")
    page.locator("#email").fill("axe@example.com")
    page.locator("main form button[type=submit]").first.click()
    page.wait_for_url("**/accounts/code/**")
    assert_site_accessible(page)
    settings.RATE_LIMIT_CODE_ENTRIES_PER_IP = (1, 15 * 60)
    for attempt in ("000000", "000001"):
        page.locator("#code").fill(attempt)
        page.locator("main form button[type=submit]").first.click()
        # The error is announced and tied to the field it is about.
        expect(page.locator("#code")).to_have_attribute("aria-describedby", "code-error")
        expect(page.locator("#code-error")).to_have_attribute("role", "alert")
        assert_site_accessible(page)


def test_every_signed_in_page_passes_axe(site_axe_page):
    page = site_axe_page
    sign_in_by_code(page, "a11y@example.com")
    assert_site_accessible(page)  # with its welcome messages
    user = User.objects.get(email="a11y@example.com")
    generation = finished_generation(user)
    ended = [
        finished_generation(user, status=status)
        for status in (Generation.Status.FAILED, Generation.Status.CANCELED, Generation.Status.RUNNING)
    ]
    for path in (
        "/",
        f"/?source={generation.pk}",
        "/history/",
        "/history/?status=failed",
        f"/g/{generation.pk}/",
        *(f"/g/{other.pk}/" for other in ended),
        "/accounts/",
        "/credits/",
    ):
        assert_site_accessible(page, path)
    # The studio refusing a submit, in the page (no style) and from the server (error
    # summary; form.submit() skips the page's own checks, as a browser without scripts
    # would), and the out-of-credits state.
    page.goto("/")
    page.get_by_test_id("start").click()
    expect(page.locator("#styles")).to_be_focused()
    assert_site_accessible(page)
    page.locator("[data-studio-form]").evaluate("form => form.submit()")
    expect(page.get_by_test_id("error-summary")).to_be_focused()
    assert_site_accessible(page)
    ledger.grant(user=user, amount=-balance_of(user=user), reason=CreditEntry.Reason.ADJUST, note="test")
    assert_site_accessible(page, "/")


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


# Contrast of the focus ring against what is behind it (WCAG 1.4.11: at least 3:1).
FOCUS_RING_CONTRAST = """el => {
    const rgb = value => (value.match(/[\\d.]+/g) || []).map(Number);
    const luminance = ([r, g, b]) => {
        const channel = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
        return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b);
    };
    const ringed = [el, el.closest("label, .preset-option, .recent-photo, .dropzone")].filter(Boolean)
        .find(node => getComputedStyle(node).outlineStyle !== "none");
    if (!ringed) return 0;
    let behind = ringed.parentElement;
    while (behind && (rgb(getComputedStyle(behind).backgroundColor)[3] === 0
                      || getComputedStyle(behind).backgroundColor === "transparent")) behind = behind.parentElement;
    const back = behind ? rgb(getComputedStyle(behind).backgroundColor) : [255, 255, 255];
    const [a, b] = [luminance(rgb(getComputedStyle(ringed).outlineColor)), luminance(back)].sort((x, y) => y - x);
    return (a + 0.05) / (b + 0.05);
}"""


def test_the_studio_by_keyboard_alone_from_photo_to_the_announced_result(page, start_worker, tmp_path):
    """Tab, Space and the arrow keys only: choose the photo, pick a style, tick a box and
    create; every stop shows a focus ring that stands out, the live region says how it
    ended, and focus left on Cancel is not thrown to the top of the page when it ends."""
    start_worker(OFFLINE_QUEUE_SECONDS="1", OFFLINE_RUN_SECONDS="4")  # time to reach Cancel
    # Playwright asks Chromium to hand it file choosers when a listener is first added, and
    # does not wait for the answer: added only at the key press, the chooser sometimes
    # opened (and was dismissed, headless) before Chromium heard, and the test timed out.
    page.on("filechooser", lambda chooser: None)
    preset = ghibli_tears()
    sign_in(page, "keys-only@example.com")
    page.goto("/")
    page.locator("body").focus()

    def tab_to(selector: str, *, limit: int = 30) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if page.evaluate("s => document.activeElement.matches(s)", selector):
                contrast = page.evaluate(f"({FOCUS_RING_CONTRAST})(document.activeElement)")
                assert contrast >= 3, f"the focus ring on {selector} is {contrast:.2f}:1 against its background"
                return
        raise AssertionError(f"{selector} is not reachable by Tab")

    tab_to("#id_image")
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Space")
    chooser.value.set_files(photo(tmp_path))
    expect(page.locator("[data-preview]")).to_be_visible()

    tab_to('input[name="preset"]')
    page.keyboard.press("ArrowRight")  # a radio group: the arrows move the choice
    page.keyboard.press("ArrowLeft")
    chosen = page.locator('input[name="preset"]:checked')
    expect(chosen).to_have_value(preset.slug)
    expect(page.locator("[data-chosen-style]")).to_have_text(preset.name)  # said aloud (aria-live)

    tab_to('input[name="is_public"]')
    page.keyboard.press("Space")
    expect(page.locator('input[name="is_public"]')).to_be_checked()
    tab_to('[data-testid="start"]')
    page.keyboard.press("Enter")

    page.wait_for_url(re.compile(r"/g/[0-9a-f-]{36}/$"))
    # Waiting on "Cancel and refund" while it runs: the card is replaced every second.
    tab_to('[data-testid="cancel"]')
    announcer = page.locator("[data-status-announcer]")
    expect(announcer).to_have_attribute("aria-live", "polite")
    expect(announcer).to_have_text("Status: Succeeded", timeout=45_000)
    # The button went with the running card; the place is kept on the result's title.
    title = page.get_by_role("heading", level=1)
    expect(title).to_have_text(preset.name)
    expect(title).to_be_focused()
    result = page.get_by_test_id("result").locator("img").first
    assert preset.name in (result.get_attribute("alt") or ""), "the result is described by its style"
    tab_to('[data-testid="download"]')
