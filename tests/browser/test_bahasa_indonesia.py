"""The create flow in real Chromium, in Bahasa Indonesia: a browser whose language is
Indonesian signs in, makes an image, watches it finish, publishes and shares it, and
switches language from the header. On every page the visible text holds no English
that the catalogue translates (each English message, and each fragment of one between
its placeholders, is looked for in the page's rendered text)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core import mail
from playwright.sync_api import expect

from stefna.accounts.models import User
from stefna.tests.test_i18n_catalogue import parse_po
from tests.browser.conftest import DESKTOP, screenshot
from tests.browser.test_studio_flows import ghibli_tears, photo

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LOCALE = Path(settings.BASE_DIR) / "locale" / "id" / "LC_MESSAGES"


def english_phrases() -> list[str]:
    """Every English text the catalogue translates differently, cut at placeholders and tags."""
    phrases: set[str] = set()
    for domain in ("django", "djangojs"):
        for entry in parse_po(LOCALE / f"{domain}.po"):
            if not entry["msgid"]:
                continue
            translated = " ".join(entry["msgstr"].values())
            for english in (entry["msgid"], entry.get("msgid_plural", "")):
                for piece in re.split(r"%\(\w+\)[sd]|<[^>]+>|\\n|\\\"", english):
                    piece = " ".join(piece.split()).strip(" .,:;·()“”")
                    # Words shared by both languages (Studio, Model, Status, Google) prove nothing.
                    if len(piece) >= 4 and piece not in translated and re.search(r"[a-z]{3}", piece):
                        phrases.add(piece)
    return sorted(phrases, key=len, reverse=True)


PHRASES = english_phrases()


def assert_indonesian(page) -> None:
    text = page.locator("body").inner_text()
    text += " " + " ".join(
        value or ""
        for value in page.locator("[aria-label], [alt], [placeholder], [title]").evaluate_all(
            "els => els.map(e => [e.getAttribute('aria-label'), e.getAttribute('alt'), e.getAttribute('placeholder'), e.getAttribute('title')].filter(Boolean).join(' '))"
        )
    )
    english = [phrase for phrase in PHRASES if re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", text)]
    assert english == [], f"English left on {page.url}: {english[:10]}"
    assert page.locator("html").get_attribute("lang") == "id"


@pytest.fixture
def indonesian_page(browser, live_server):
    context = browser.new_context(viewport=DESKTOP, base_url=live_server.url, locale="id-ID")
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "console",
        lambda m: errors.append(m.text) if m.type == "error" and "Content Security Policy" in m.text else None,
    )
    yield page
    context.close()
    assert not errors, f"browser errors: {errors}"


def test_the_create_flow_in_bahasa_indonesia(indonesian_page, start_worker, tmp_path):
    page = indonesian_page
    assert len(PHRASES) > 150  # the check has teeth: the catalogue's English is all there
    preset = ghibli_tears()
    start_worker()

    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Ubah foto jadi karya seni")
    expect(page.get_by_text("Mode pratinjau offline:")).to_be_visible()
    assert_indonesian(page)

    mail.outbox.clear()
    page.goto("/accounts/sign-in/")
    assert_indonesian(page)
    page.get_by_label("Alamat email").fill("demo@example.com")
    page.get_by_role("button", name="Kirim kode ke email-ku").click()
    page.wait_for_url(re.compile(r"/accounts/code/"))
    assert_indonesian(page)
    message = mail.outbox[-1]
    assert message.subject.startswith("Kode masuk Stefna kamu:")
    code = re.search(r"\b(\d{6})\b", message.subject).group(1)
    page.get_by_label("Kode masuk").fill(code)
    page.get_by_role("button", name="Masuk", exact=True).click()
    page.wait_for_url(lambda url: "/accounts/" not in url)
    handle = User.objects.get(email="demo@example.com").public_name
    expect(page.get_by_text(f"Selamat datang, {handle}!")).to_be_visible()

    page.set_input_files("#id_image", photo(tmp_path))
    expect(page.locator("[data-preview]")).to_be_visible()
    page.get_by_test_id(f"preset-{preset.slug}").click()
    expect(page.get_by_test_id(f"preset-{preset.slug}")).to_contain_text("Ghibli haru")
    page.get_by_label("Jadikan gambarku publik").check()
    assert_indonesian(page)
    screenshot(page, "studio-id", full_page=False)
    page.get_by_test_id("start").click()

    page.wait_for_url(re.compile(r"/g/[0-9a-f-]{36}/$"))
    card = page.get_by_test_id("status-card")
    expect(card).to_have_attribute("data-status", re.compile("queued|running"))
    assert_indonesian(page)  # while it runs: steps, facts, the live log
    expect(card).to_have_attribute("data-status", "succeeded", timeout=45_000)
    expect(page.get_by_test_id("status")).to_have_text("Berhasil")
    expect(page.locator("[data-status-announcer]")).to_have_text("Status: Berhasil")
    assert_indonesian(page)

    page.goto("/history/")
    expect(page.get_by_test_id("history-item").first).to_contain_text("Ghibli haru")
    assert_indonesian(page)

    page.goto("/feed/")
    expect(page.get_by_test_id("feed-item").first).to_contain_text(f"oleh {handle}")
    assert_indonesian(page)
    page.get_by_test_id("feed-item").first.click()
    page.wait_for_url(re.compile(r"/i/[A-Za-z0-9_-]{22}$"))
    expect(page.get_by_test_id("share-preset")).to_have_text("Ghibli haru")
    expect(page.get_by_test_id("share-button")).to_have_text("Bagikan")
    assert page.locator('meta[property="og:locale"]').get_attribute("content") == "id_ID"
    assert_indonesian(page)
    screenshot(page, "share-id", full_page=False)

    page.goto("/accounts/")
    assert_indonesian(page)

    # The header's switcher: English now, remembered on the account, then back.
    page.get_by_test_id("language-en").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Account")
    with pytest.raises(AssertionError, match="English left"):
        assert_indonesian(page)  # and the check does see English when there is some
    page.get_by_test_id("language-id").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Akun")


def test_a_chosen_photo_s_size_is_grouped_as_the_page_s_language_writes_numbers(page, tmp_path):
    """The dropzone's "photo.jpg · 1.234 KB": the browser's own digits, grouped for the page."""
    import os

    from PIL import Image

    from tests.browser.conftest import sign_in

    noise = Image.frombytes("RGB", (1100, 1100), os.urandom(1100 * 1100 * 3))
    path = tmp_path / "noisy.jpg"
    noise.save(path, "JPEG", quality=100)
    kilobytes = int(path.stat().st_size / 1024 + 0.5)  # as Math.round does
    assert kilobytes >= 1000, kilobytes

    sign_in(page, "size@example.com")
    page.get_by_test_id("language-id").click()
    page.wait_for_load_state()
    assert page.locator("html").get_attribute("lang") == "id"
    page.goto("/")
    page.set_input_files("#id_image", str(path))
    grouped = f"{kilobytes:,}".replace(",", ".")
    expect(page.locator("[data-dropzone-status]")).to_have_text(f"noisy.jpg · {grouped} KB")


def test_a_history_card_s_no_image_note_stays_centred_when_indonesian_wraps_it(browser, live_server):
    """At 375 px (an iPhone mini or SE) "Tanpa gambar · kredit dikembalikan" wraps onto two lines, and the lines
    sat against the tile's left edge: the grid centred the box of text, not its lines (in
    English the note fits on one line and looked centred)."""
    from generation.models import Generation
    from tests.browser.test_account_pages import signed_in_page
    from tests.browser.test_result_and_forms import finished_generation

    user = User.objects.create_user(email="gagal@example.com")
    finished_generation(user, status=Generation.Status.FAILED)
    context, page = signed_in_page(browser, live_server, user, viewport={"width": 375, "height": 812}, locale="id-ID")
    page.goto("/history/")
    note = page.get_by_test_id("media-placeholder")
    expect(note).to_have_text("Tanpa gambar · kredit dikembalikan")

    tile, lines = note.evaluate(
        """el => { const range = document.createRange(); range.selectNodeContents(el);
                   return [el.getBoundingClientRect().toJSON(), [...range.getClientRects()].map(r => r.toJSON())]; }"""
    )
    assert len(lines) >= 2, "the note wraps at this width (else the test proves nothing)"
    for line in lines:
        left, right = line["left"] - tile["left"], tile["right"] - line["right"]
        assert abs(left - right) <= 2, f"a line off centre: {left:.0f} px on the left, {right:.0f} px on the right"
        assert min(left, right) >= 8, "the text touches the tile's edge"
    context.close()
