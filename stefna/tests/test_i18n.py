"""Which language Stefna speaks: the account's choice, else the switcher's cookie, else
Accept-Language, else English; the API follows Accept-Language alone and keeps its codes."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.core import mail
from django.template import Context, Template
from django.utils import translation

from stefna.accounts.models import User
from stefna.i18n_tags import money, preset_label

pytestmark = pytest.mark.django_db

INDONESIAN = "id-ID,id;q=0.9,en;q=0.4"


def heading(response) -> str:
    match = re.search(r"<h1>(.*?)</h1>", response.content.decode(), flags=re.S)
    assert match, "the page has no <h1>"
    return match.group(1).strip()


def test_pages_follow_accept_language(client):
    assert heading(client.get("/accounts/sign-in/", HTTP_ACCEPT_LANGUAGE=INDONESIAN)) == "Masuk ke Stefna"
    response = client.get("/accounts/sign-in/", HTTP_ACCEPT_LANGUAGE="en-GB,en;q=0.8")
    assert heading(response) == "Sign in to Stefna"
    assert response["Content-Language"] == "en"
    assert "Accept-Language" in response["Vary"]


@pytest.mark.parametrize("header", ["xx-YY", "fr-FR,de;q=0.5", "", "*", "id-;;q=x", "en-XX"])
def test_unknown_languages_fall_back_to_english(client, header):
    response = client.get("/accounts/sign-in/", HTTP_ACCEPT_LANGUAGE=header)
    assert response.status_code == 200
    assert heading(response) == "Sign in to Stefna"


def test_the_switcher_remembers_the_choice_for_visitors(client):
    response = client.post("/language/", {"language": "id", "next": "/feed/"}, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 302 and response["Location"] == "/feed/"
    assert response.cookies["stefna_language"].value == "id"
    page = client.get("/accounts/sign-in/", HTTP_ACCEPT_LANGUAGE="en")
    assert heading(page) == "Masuk ke Stefna"
    assert 'lang="id"' in page.content.decode()


def test_the_switcher_returns_to_the_page_it_was_used_on(client):
    response = client.post("/language/", {"language": "id"}, HTTP_REFERER="http://testserver/history/?kind=preset")
    assert response["Location"] == "http://testserver/history/?kind=preset"
    assert client.post("/language/", {"language": "id"}, HTTP_REFERER="https://evil.example/")["Location"] == "/"


def test_the_switcher_falls_back_to_english_for_an_unknown_code_and_refuses_foreign_next(client):
    response = client.post("/language/", {"language": "klingon", "next": "https://evil.example/"})
    assert response["Location"] == "/"
    assert response.cookies["stefna_language"].value == "en"


def test_the_switcher_keeps_a_next_with_its_fragment_on_this_site_only(client):
    """stefna.js sends the page's address with its #fragment as `next` (a Referer has none)."""
    response = client.post("/language/", {"language": "id", "next": "/account/#credits"})
    assert response["Location"] == "/account/#credits"
    for foreign in ("//evil.example/#credits", "/\\evil.example/#credits", "https://evil.example/account/#credits"):
        assert client.post("/language/", {"language": "id", "next": foreign})["Location"] == "/", foreign


def test_the_switcher_never_sends_an_https_visitor_to_plain_http(client):
    over_https = {"language": "id", "next": "http://testserver/account/"}
    assert client.post("/language/", over_https, secure=True)["Location"] == "/"
    kept = client.post("/language/", {**over_https, "next": "https://testserver/account/"}, secure=True)
    assert kept["Location"] == "https://testserver/account/"


def test_the_switcher_is_in_the_header_and_marks_the_current_language(client):
    page = client.get("/", HTTP_ACCEPT_LANGUAGE=INDONESIAN).content.decode()
    assert 'action="/language/"' in page
    assert re.search(r'value="id"[^>]*aria-pressed="true"', page)
    assert re.search(r'value="en"[^>]*aria-pressed="false"', page)


def test_a_signed_in_choice_is_saved_on_the_account_and_wins_everywhere(client, user):
    client.force_login(user)
    client.post("/language/", {"language": "id", "next": "/"})
    user.refresh_from_db()
    assert user.language == "id"
    # Another browser, asking for English: the account's choice wins.
    other = client.__class__()
    other.force_login(user)
    assert heading(other.get("/accounts/", HTTP_ACCEPT_LANGUAGE="en")) == "Akun"


@pytest.mark.parametrize(
    ("path", "data", "said"),
    [
        ("/accounts/sign-out/", {}, None),
        ("/accounts/delete/", {"confirm": "ada@example.com"}, "Akunmu sudah dihapus."),
    ],
    ids=["sign-out", "account-deleted"],
)
def test_the_language_outlives_the_session(client, user, path, data, said):
    """The account said Indonesian; once the session ends (signed out, or the account
    deleted), the browser alone would say English: the next page stays Indonesian."""
    user.language = "id"
    user.save(update_fields=["language"])
    client.force_login(user)

    response = client.post(path, data, HTTP_ACCEPT_LANGUAGE="en")

    assert response.cookies["stefna_language"].value == "id"
    page = client.get(response["Location"], HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert 'lang="id"' in page
    assert "Masuk" in page  # the header's "Sign in"
    if said:
        assert said in page


def test_signing_out_pins_no_language_the_browser_already_asks_for(client, user):
    user.language = "id"
    user.save(update_fields=["language"])
    client.force_login(user)
    response = client.post("/accounts/sign-out/", HTTP_ACCEPT_LANGUAGE=INDONESIAN)
    assert "stefna_language" not in response.cookies


def test_signing_in_keeps_the_language_the_visitor_browsed_in(client):
    client.post("/language/", {"language": "id"})
    client.post("/accounts/sign-in/", {"email": "budi@example.com"})
    code = re.search(r"\b(\d{6})\b", mail.outbox[-1].body).group(1)
    client.post("/accounts/code/", {"code": code})
    assert User.objects.get(email="budi@example.com").language == "id"


def test_the_sign_in_email_is_written_in_the_visitors_language(client):
    client.post("/accounts/sign-in/", {"email": "sari@example.com"}, HTTP_ACCEPT_LANGUAGE=INDONESIAN)
    message = mail.outbox[-1]
    assert message.subject.startswith("Kode masuk Stefna kamu: ")
    assert "Kode masukmu adalah" in message.body
    assert "berlaku 10 menit" in message.body
    client.post("/accounts/sign-in/", {"email": "sam@example.com"}, HTTP_ACCEPT_LANGUAGE="en")
    assert mail.outbox[-1].subject.startswith("Your Stefna sign-in code: ")


def test_form_errors_are_translated(client, user):
    client.force_login(user)
    client.post("/language/", {"language": "id"})
    page = client.post("/", {"preset": "oil_painting"}).content.decode()
    assert "Pilih foto yang ingin diubah." in page


def test_the_offline_banner_is_translated(client, settings):
    settings.OFFLINE_MODE = True
    page = client.get("/", HTTP_ACCEPT_LANGUAGE=INDONESIAN).content.decode()
    assert "Mode pratinjau offline:" in page
    assert "Offline preview mode" not in page


# --- the API -----------------------------------------------------------------------------


def test_api_messages_follow_accept_language_and_codes_never_change(api_client):
    from django.test import Client

    anonymous = Client()
    english = anonymous.get("/api/quota", HTTP_ACCEPT_LANGUAGE="en").json()
    bahasa = anonymous.get("/api/quota", HTTP_ACCEPT_LANGUAGE=INDONESIAN).json()
    assert english["code"] == bahasa["code"] == "unauthorized"
    assert bahasa["message"] == "Masuk dulu atau kirim token API yang valid (Authorization: Bearer …)."
    missing = api_client.get("/api/generations/00000000-0000-4000-8000-000000000000", HTTP_ACCEPT_LANGUAGE="id")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    assert missing.json()["message"] == "Kreasi tidak ditemukan."
    unknown = anonymous.get("/api/nope", HTTP_ACCEPT_LANGUAGE="id").json()
    assert unknown["code"] == "not_found" and unknown["message"].startswith("Tidak ada rute API GET /api/nope")


def test_the_api_ignores_the_page_language_choice(client, user, api_token):
    client.force_login(user)
    client.post("/language/", {"language": "id"})
    # The browser's choice (account and cookie) says Indonesian; a script asking for English gets English.
    answer = client.get("/api/nope", HTTP_ACCEPT_LANGUAGE="en").json()
    assert answer["message"].startswith("There is no API route")


def test_every_api_error_message_has_an_indonesian_translation():
    """Each error class's default message, per stable code, reads in Bahasa Indonesia."""
    from credits.exceptions import AlreadyReserved, AlreadySettled, InsufficientCredits
    from generation.api import GenerationCanceled, GenerationFailed
    from generation.exceptions import (
        IdempotencyConflict,
        ImageTooLarge,
        ImageTooManyPixels,
        InvalidTransition,
        UnsupportedImage,
    )
    from stefna.accounts.services import CodeInvalid
    from stefna.errors import DomainError, Forbidden, InvalidInput, NotFound, RateLimited, Unauthorized

    classes = [
        DomainError,
        InvalidInput,
        NotFound,
        Forbidden,
        Unauthorized,
        RateLimited,
        InsufficientCredits,
        AlreadySettled,
        AlreadyReserved,
        GenerationFailed,
        GenerationCanceled,
        IdempotencyConflict,
        ImageTooLarge,
        ImageTooManyPixels,
        InvalidTransition,
        UnsupportedImage,
        CodeInvalid,
    ]
    for error_class in classes:
        english = error_class().message
        with translation.override("id"):
            error = error_class()
        assert error.code == error_class.code
        assert error.message != english, f"{error_class.__name__} ({error_class.code}) has no Indonesian message"


# --- formats -----------------------------------------------------------------------------


def render(source: str, **context) -> str:
    return Template("{% load stefna_i18n %}" + source).render(Context(context))


def test_dates_and_numbers_follow_the_language():
    moment = datetime(2026, 3, 9, 14, 5, tzinfo=UTC)
    with translation.override("en"):
        assert render('{{ d|date:"DATE_FORMAT" }}', d=moment) == "March 9, 2026"
        assert render("{{ n|floatformat:'g' }}", n=1234567) == "1,234,567"
    with translation.override("id"):
        assert render('{{ d|date:"DATE_FORMAT" }}', d=moment) == "9 Mar 2026"
        assert render("{{ n|floatformat:'g' }}", n=1234567) == "1.234.567"


@pytest.mark.parametrize(
    ("month", "english", "indonesian"),
    [(12, "Dec. 7, 2026", "7 Des 2026"), (5, "May 7, 2026", "7 Mei 2026"), (8, "Aug. 7, 2026", "7 Agu 2026")],
)
def test_indonesian_dates_shorten_every_month_alike_without_a_full_stop(month, english, indonesian):
    # Django's own "j N Y" wrote "7 Des. 2026" beside "9 Maret 2026".
    moment = datetime(2026, month, 7, 9, 5, tzinfo=UTC)
    with translation.override("en"):
        assert render('{{ d|date:"DATE_FORMAT" }}', d=moment) == english
    with translation.override("id"):
        assert render('{{ d|date:"DATE_FORMAT" }}', d=moment) == indonesian


def test_times_read_as_each_language_writes_a_clock():
    moment = datetime(2026, 12, 7, 9, 5, tzinfo=UTC)
    with translation.override("en"):
        assert render("{{ d|time }}", d=moment) == "09:05"
    with translation.override("id"):
        assert render("{{ d|time }}", d=moment) == "09.05"
        assert render('{{ d|date:"DATETIME_FORMAT" }}', d=moment) == "7 Des 2026, 09.05"


def test_counts_of_credits_are_grouped_in_thousands_for_the_language():
    with translation.override("en"):
        assert render("{{ n|grouped }}", n=1500) == "1,500"
    with translation.override("id"):
        assert render("{{ n|grouped }}", n=1500) == "1.500"
        assert render("{{ n|grouped }}", n=-12000) == "-12.000"
        assert render("{{ n|grouped }}", n=None) == ""


def test_the_account_page_groups_a_large_balance_and_writes_times_the_indonesian_way(client, user):
    from credits import ledger
    from credits.models import CreditEntry
    from credits.selectors import balance_of

    user.language = "id"
    user.save(update_fields=["language"])
    client.force_login(user)
    client.get("/accounts/")  # today's allowance
    ledger.grant(user=user, amount=1500, reason=CreditEntry.Reason.GRANT, note="test")
    expected = f"{balance_of(user=user):,}".replace(",", ".")

    html = " ".join(client.get("/accounts/").content.decode().split())

    assert f'data-testid="balance">{expected}<' in html
    assert f'<span class="quota-number">{expected}</span>' in html
    assert '<td class="plus">+1.500</td>' in html
    # The ledger's times and the next top-up: "00.00 UTC", never "00:00".
    assert re.search(r"\d\d\.\d\d UTC</time>", html)
    assert not re.search(r"\d\d:\d\d UTC</time>", html)


def test_prices_are_formatted_for_the_language():
    with translation.override("en"):
        assert money(499, "usd") == "$4.99"
        assert money(150000, "usd") == "$1,500.00"
        assert money(4900000, "idr") == "Rp49,000"
    with translation.override("id"):
        assert money(499, "usd") == "US$4,99"
        assert money(4900000, "idr") == "Rp49.000"
        assert money(499, "eur") == "€4,99"
        assert money(1000, "jpy") == "JPY 1.000"
    assert money(None) == ""


def test_a_generation_s_stored_preset_name_is_shown_in_the_language():
    with translation.override("id"):
        assert preset_label("oil_painting", "Oil painting") == "Lukisan cat minyak"
        assert preset_label("gone_preset", "Old name") == "Old name"
    with translation.override("en"):
        assert preset_label("oil_painting", "Oil painting") == "Oil painting"


# --- errors raised in English with figures ------------------------------------------------


def post_generation(api_client, **data):
    from tests.images import make_jpeg

    payload = {"image": _upload(make_jpeg()), "preset": "oil_painting", **data}
    return api_client.post("/api/generations", payload, HTTP_ACCEPT_LANGUAGE="id")


def _upload(content: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("photo.jpg", content, content_type="image/jpeg")


def test_insufficient_credits_reads_in_indonesian_with_its_figures(api_client, user):
    from credits import ledger
    from credits.models import CreditEntry
    from credits.selectors import balance_of

    ledger.ensure_daily_allowance(user=user)
    ledger.grant(user=user, amount=-balance_of(user=user), reason=CreditEntry.Reason.ADJUST, note="test")
    answer = post_generation(api_client)
    assert answer.status_code == 402
    body = answer.json()
    assert body["code"] == "insufficient_credits"
    assert body["message"].startswith("Ini butuh 2 kredit, sedangkan kreditmu 0. Kredit harianmu terisi lagi pukul ")
    assert re.search(r"pukul \d\d\.\d\d UTC", body["message"]), body["message"]


def test_an_english_out_of_credits_message_gets_an_indonesian_clock():
    from stefna.i18n_errors import error_message

    english = "This costs 2 credits and you have 0. Your daily credits refill at 00:00 UTC."
    with translation.override("id"):
        assert error_message(message=english, default="").endswith("terisi lagi pukul 00.00 UTC.")


def test_an_unknown_style_and_a_long_prompt_read_in_indonesian(api_client, settings):
    unknown = post_generation(api_client, preset="no-such-style").json()
    assert unknown["code"] == "invalid_input"
    assert unknown["message"] == "Gaya itu tidak tersedia. Pilih salah satu gaya yang ada."
    long = post_generation(api_client, preset="custom_prompt", prompt="x" * (settings.MAX_PROMPT_CHARS + 1)).json()
    assert long["code"] == "invalid_input"
    assert "Prompt-nya terlalu panjang" in long["message"] or "tidak valid" in long["message"]


def test_an_unsupported_image_reads_in_indonesian(api_client):
    from tests.images import make_image_bytes

    gif = make_image_bytes(format="GIF")
    answer = api_client.post(
        "/api/generations",
        {"image": _upload(gif), "preset": "oil_painting"},
        HTTP_ACCEPT_LANGUAGE="id",
    )
    assert answer.status_code == 415
    assert answer.json() == {
        "code": "unsupported_image",
        "message": "Gambar GIF tidak didukung. Unggah foto JPEG, PNG, WebP, HEIC, atau AVIF.",
        "detail": {"format": "GIF"},
    }


def test_english_messages_are_never_rewritten_and_unknown_ones_pass_through():
    from stefna.errors import InvalidInput

    english = "There is no active style called 'x'."
    with translation.override("en"):
        assert InvalidInput(english).message == english
    with translation.override("id"):
        assert InvalidInput(english).message == "Gaya itu tidak tersedia. Pilih salah satu gaya yang ada."
        assert InvalidInput("Something specific, 42.").message == "Something specific, 42."
        assert InvalidInput("Kodenya salah. Sisa 3 kali percobaan.").message == "Kodenya salah. Sisa 3 kali percobaan."


def test_credit_pack_prices_follow_the_language():
    from credits.models import format_price

    with translation.override("en"):
        assert format_price(499, "usd") == "$4.99"
    with translation.override("id"):
        assert format_price(499, "usd") == "US$4,99"
        assert format_price(7500000, "idr") == "Rp75.000"


def test_log_lines_naming_the_offline_renderer_read_wholly_in_indonesian():
    from stefna.i18n_tags import log_message

    # The worker writes the offline renderer's name in English (generation/labels.py).
    working = "the offline preview renderer (standing in for Ghiblify) is working on it"
    finished = "the offline preview renderer (standing in for Ghiblify) finished: 1 image; saving"
    with translation.override("en"):
        assert log_message(working) == working
    with translation.override("id"):
        assert log_message(working) == "perender pratinjau offline (menggantikan Ghiblify) sedang mengerjakannya"
        assert log_message(finished).startswith("perender pratinjau offline (menggantikan Ghiblify) ")
        assert "the offline preview renderer" not in log_message(finished)
        # A fal model's own name stays as it is.
        assert log_message("Ghiblify is working on it") == "Ghiblify sedang mengerjakannya"
        # The submission's line, which a worker woken at once shows before the page first loads.
        sent = "Sent to the offline preview renderer (standing in for Ghiblify)"
        assert log_message(sent) == "Dikirim ke perender pratinjau offline (menggantikan Ghiblify)"
        assert log_message("Sent to Ghiblify") == "Dikirim ke Ghiblify"
        assert log_message("Ghiblify could not be asked: timeout") == "Ghiblify tidak bisa dihubungi: timeout"
        assert log_message("Ghiblify finished, but its images were gone").startswith("Ghiblify selesai, tapi ")


def test_the_line_written_when_a_result_is_gone_reads_wholly_in_indonesian():
    # finish.result_gone writes this reason; the page recognises the same string to translate it.
    from stefna.i18n_tags import RESULT_GONE_REASON, log_message

    line = f"Ghiblify finished, but {RESULT_GONE_REASON}"
    with translation.override("id"):
        assert log_message(line) == "Ghiblify selesai, tapi gambarnya sudah tidak ada saat kami mengambilnya"


# --- messages a service wrote in English, read by an Indonesian visitor --------------------


def test_too_many_code_entries_from_one_network_reads_in_indonesian(client, settings):
    settings.RATE_LIMIT_CODE_ENTRIES_PER_IP = (1, 15 * 60)
    client.post("/accounts/sign-in/", {"email": "sari@example.com"}, HTTP_ACCEPT_LANGUAGE=INDONESIAN)
    client.post("/accounts/code/", {"code": "000000"}, HTTP_ACCEPT_LANGUAGE=INDONESIAN)

    refused = client.post("/accounts/code/", {"code": "000001"}, HTTP_ACCEPT_LANGUAGE=INDONESIAN)

    assert refused.status_code == 429
    html = refused.content.decode()
    assert "Terlalu banyak percobaan masuk dari jaringanmu." in html
    assert "Too many sign-in attempts" not in html


def test_a_nul_in_the_display_name_is_refused_in_the_accounts_language(client, user):
    user.language = "id"
    user.save(update_fields=["language"])
    client.force_login(user)

    page = client.post("/accounts/", {"display_name": "Ada\x00"}, HTTP_ACCEPT_LANGUAGE="en", follow=True)

    html = page.content.decode()
    assert "Isian itu berisi karakter NUL" in html
    assert "NUL character" not in html


def test_the_receipt_is_written_in_the_buyers_language_whoever_reports_the_payment(user, seeded_packs):
    """Stripe's webhook is an English-speaking request: the buyer's saved language wins."""
    from credits.models import CreditPack, Purchase
    from credits.payments.purchases import purchase_send_receipt

    user.language = "id"
    user.save(update_fields=["language"])
    purchase = Purchase.objects.create(
        user=user,
        email=user.email,
        pack=CreditPack.objects.get(slug="starter"),
        credits=50,
        price=499,
        currency="usd",
        provider=Purchase.Provider.OFFLINE,
    )

    with translation.override("en"):
        purchase_send_receipt(purchase_id=purchase.pk)

    message = mail.outbox[-1]
    assert message.subject == "Bukti pembayaran dari Stefna: 50 kredit"
    assert "Terima kasih" in message.body and "US$4,99" in message.body
    assert re.search(r"^Tanggal: \d{1,2} [A-Z][a-z]{2} \d{4}$", message.body, re.M), message.body
    assert "Thank you" not in message.body


def test_the_finished_email_is_written_in_the_owners_language(user):
    from generation.notify import generation_notify_send
    from generation.tests.factories import GenerationFactory

    user.language = "id"
    user.save(update_fields=["language"])
    generation = GenerationFactory(user=user, status="succeeded", notify=True)

    with translation.override("en"):
        assert generation_notify_send(generation_id=str(generation.pk))

    message = mail.outbox[-1]
    assert "sudah jadi" in message.subject, message.subject
    assert "ready" not in message.subject


def test_a_balance_of_one_reads_as_one_credit(client, user):
    from credits import ledger
    from credits.models import CreditEntry
    from credits.selectors import balance_of

    client.force_login(user)
    client.get("/accounts/")  # today's allowance
    ledger.grant(user=user, amount=1 - balance_of(user=user), reason=CreditEntry.Reason.ADJUST, note="test")

    html = " ".join(client.get("/accounts/", HTTP_ACCEPT_LANGUAGE="en").content.decode().split())

    assert '<span class="balance-unit">credit</span>' in html
    assert '<span class="muted">credit left</span>' in html
    assert "credits left" not in html


def test_no_indonesian_translation_carries_another_entrys_translation_glued_on():
    """A merge of two catalogue edits once left the "already granted" translation stuck
    onto the "already retried" one, so staff read both sentences. An entry's translation
    holds another's whole (long) translation only where its English holds that English."""
    import gettext
    from pathlib import Path

    from django.conf import settings

    with (Path(settings.BASE_DIR) / "locale" / "id" / "LC_MESSAGES" / "django.mo").open("rb") as catalogue:
        entries = {
            msgid: msgstr
            for msgid, msgstr in gettext.GNUTranslations(catalogue)._catalog.items()  # type: ignore[attr-defined]
            if isinstance(msgid, str) and msgid and isinstance(msgstr, str)
        }
    long_ones = [(msgid, msgstr) for msgid, msgstr in entries.items() if len(msgstr) >= 30]
    glued = [
        (msgid, other_id)
        for msgid, msgstr in entries.items()
        for other_id, other in long_ones
        if other_id != msgid and other in msgstr and other_id not in msgid
    ]
    assert glued == []
