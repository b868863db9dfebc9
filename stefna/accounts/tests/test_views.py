"""The account page and the polished sign-in pages through Django's test client."""

from __future__ import annotations

import html
import re

import pytest
from django.conf import settings
from django.test import Client

from credits import ledger
from stefna.accounts.models import ApiToken

pytestmark = pytest.mark.django_db


@pytest.fixture
def signed_in(client, user):
    client.force_login(user)
    return client


def test_sign_in_pages_have_labelled_fields(client):
    body = client.get("/accounts/sign-in/").content.decode()
    assert '<label for="email">Email address</label>' in body
    assert 'id="email" name="email" type="email"' in body


def test_the_sign_in_page_answers_head_as_link_checkers_ask(client):
    head = client.head("/accounts/sign-in/")
    assert head.status_code == 200 and head.content == b""


def test_the_account_page_shows_email_name_credits_and_ledger(signed_in, user):
    ledger.grant(user=user, amount=5, note="welcome gift")
    body = signed_in.get("/accounts/").content.decode()
    assert 'data-testid="account-email">ada@example.com<' in body
    assert 'value="Ada"' in body
    assert "Daily allowance" in body and "Grant" in body and "welcome gift" in body
    assert f"{settings.DAILY_CREDITS} a day" in body
    assert f'data-testid="balance">{settings.DAILY_CREDITS + 5}<' in body  # the header, everywhere


def test_the_ledger_writes_dates_as_history_does_in_either_language(signed_in, user):
    # One way of writing a date across the pages (history: "Dec. 7, 2026 · 07:41", "7 Des 2026 · 07.41"); the
    # ledger used the short format, "12/07/2026 7:41 a.m." in English, month first.
    from django.utils import formats, translation

    from credits.models import CreditEntry

    ledger.grant(user=user, amount=5, note="welcome gift")
    at = CreditEntry.objects.filter(user=user).latest("created_at").created_at
    for language in ("en", "id"):
        body = signed_in.get("/accounts/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
        with translation.override(language):
            expected = f"{formats.date_format(at, 'DATE_FORMAT')} · {formats.time_format(at)}"
        assert f">{expected}</time>" in body, (language, expected)


def test_the_account_page_needs_sign_in(client, db):
    response = client.get("/accounts/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/sign-in/")


def test_a_new_token_is_shown_once(signed_in, user):
    response = signed_in.post("/accounts/tokens/", {"name": "laptop"}, follow=True)
    body = response.content.decode()
    token = re.search(r'data-testid="new-token">(stf_[^<]+)<', body).group(1)
    assert ApiToken.objects.get(user=user).prefix == token[:10]
    assert "laptop" in body
    # Gone on the next view: only the prefix is listed.
    again = signed_in.get("/accounts/").content.decode()
    assert token not in again
    assert f"{token[:10]}…" in again


def test_revoking_a_token(signed_in, user):
    signed_in.post("/accounts/tokens/", {"name": "old"})
    token = ApiToken.objects.get(user=user)
    response = signed_in.post(f"/accounts/tokens/{token.pk}/revoke/", follow=True)
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert "Token revoked" in response.content.decode()


def test_someone_else_cannot_revoke_my_token(client, user, other_user):
    from stefna.accounts.services import api_token_create

    token, _ = api_token_create(user=user, name="mine")
    client.force_login(other_user)
    client.post(f"/accounts/tokens/{token.pk}/revoke/")
    token.refresh_from_db()
    assert token.revoked_at is None


def test_display_name_is_saved_and_escaped(signed_in, user):
    response = signed_in.post("/accounts/", {"display_name": "<img src=x onerror=alert(1)>"}, follow=True)
    body = response.content.decode()
    user.refresh_from_db()
    assert user.display_name == "<img src=x onerror=alert(1)>"
    assert "Profile saved." in body
    assert "&lt;img src=x onerror=alert(1)&gt;" in body
    assert "<img src=x onerror" not in body


def test_a_too_long_display_name_is_a_readable_error(signed_in, user):
    response = signed_in.post("/accounts/", {"display_name": "x" * 61}, follow=True)
    assert "Display name can be at most 60 characters." in response.content.decode()
    user.refresh_from_db()
    assert user.display_name == "Ada"


def test_account_writes_need_a_csrf_token(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post("/accounts/", {"display_name": "Mallory"}).status_code == 403
    assert client.post("/accounts/tokens/", {"name": "sneaky"}).status_code == 403
    assert client.post("/accounts/sign-out/").status_code == 403
    user.refresh_from_db()
    assert user.display_name == "Ada"
    assert not ApiToken.objects.filter(user=user).exists()


def test_signing_out_is_a_post(signed_in):
    assert signed_in.get("/accounts/sign-out/").status_code == 405
    assert signed_in.post("/accounts/sign-out/").status_code == 302
    assert signed_in.get("/accounts/").status_code == 302


def test_a_mistyped_deletion_email_is_said_beside_the_field_not_at_the_top(signed_in, user):
    response = signed_in.post("/accounts/delete/", {"confirm": "ada@example.co"})
    # Back to the form itself, where the error is.
    assert response.status_code == 302 and response["Location"] == "/accounts/"

    body = signed_in.get(response["Location"]).content.decode()
    error = re.search(r'<p class="field-error" id="delete-confirm-error"[^>]*>(.*?)</p>', body, flags=re.S)
    assert error and html.unescape(error.group(1)).strip() == "Type your account's email address exactly to confirm."
    field = re.search(r'<input id="delete-confirm"[^>]*>', body).group(0)
    assert 'aria-describedby="delete-confirm-error"' in field
    assert 'aria-invalid="true"' in field and "autofocus" in field
    assert 'value="ada@example.co"' in field  # what was typed, to spot the slip
    assert 'class="messages"' not in body, "no flash message at the top of the page"
    assert user.__class__.objects.get(pk=user.pk).is_active

    # Said once: a later visit shows the form clean.
    again = signed_in.get("/accounts/").content.decode()
    assert "delete-confirm-error" not in again and "autofocus" not in again


def test_deleting_says_first_that_unspent_bought_credits_are_lost(signed_in, user):
    """Deleting an account forfeits its bought credits (no refund); the section said only
    that credit records are kept, so someone with a fresh pack could delete it unawares."""
    body = signed_in.get("/accounts/").content.decode()
    assert 'data-testid="delete-forfeits-credits"' not in body  # only free credits: nothing to lose

    ledger.grant(user=user, amount=1500, note="pack")
    for language, text in (
        ("en", "You still have 1,500 bought credits. They go with the account and are not refunded"),
        ("id", "Kamu masih punya 1.500 kredit yang dibeli."),  # grouped as the balance is
    ):
        body = signed_in.get("/accounts/", HTTP_ACCEPT_LANGUAGE=language).content.decode()
        warning = body.index('data-testid="delete-forfeits-credits"')
        assert text in html.unescape(body[warning:]), language
        assert warning < body.index('aria-describedby="delete-forfeits-credits"')  # before the button, and named by it


def test_a_purchase_row_says_what_its_number_counts(signed_in, user, settings):
    """It read "Starter · 50": fifty of what, for $4.99?"""
    from credits.payments.purchases import purchase_complete_offline, purchase_start

    settings.STRIPE_SECRET_KEY, settings.OFFLINE_CHECKOUT = "", True  # the seeded Starter pack: 50 credits
    purchase = purchase_start(user=user, pack_slug="starter", site_url="http://testserver/")
    purchase_complete_offline(user=user, purchase_id=purchase.pk)
    assert "<td>Starter · 50 credits</td>" in signed_in.get("/accounts/").content.decode()
    assert "<td>Pemula · 50 kredit</td>" in signed_in.get("/accounts/", HTTP_ACCEPT_LANGUAGE="id").content.decode()


@pytest.mark.parametrize(
    ("next_url", "english", "indonesian"),
    [
        ("/history/", "Sign in to see your history.", "Masuk untuk melihat riwayatmu."),
        ("/accounts/", "Sign in to see your account.", "Masuk untuk melihat akunmu."),
        ("/credits/", "Sign in to continue.", "Masuk untuk melanjutkan."),
    ],
    ids=["history", "account", "another page"],
)
def test_a_signed_out_visit_to_a_private_page_says_why_it_landed_on_sign_in(client, next_url, english, indonesian):
    """A signed-out visit to /history/ landed on the sign-in page without a word of why."""
    landed = client.get(next_url, follow=True)
    assert landed.redirect_chain[-1][0] == f"/accounts/sign-in/?next={next_url}"
    body = landed.content.decode()
    assert f'<p class="alert alert-info" role="status" data-testid="sign-in-reason">{english}</p>' in body
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "id"
    assert indonesian in client.get(f"/accounts/sign-in/?next={next_url}").content.decode()


def test_the_sign_in_page_asked_for_directly_gives_no_reason(client):
    assert 'data-testid="sign-in-reason"' not in client.get("/accounts/sign-in/").content.decode()
    assert 'data-testid="sign-in-reason"' not in client.get("/accounts/sign-in/?next=/").content.decode()


def test_create_token_sent_twice_creates_one_token_and_shows_it(signed_in, user):
    """A double click on "Create token" made two tokens; the first was never shown."""
    form = signed_in.get("/accounts/").content.decode()
    key = re.search(r'name="create_key" value="([0-9a-f-]{36})"', form).group(1)
    first = signed_in.post("/accounts/tokens/", {"name": "laptop", "create_key": key})
    second = signed_in.post("/accounts/tokens/", {"name": "laptop", "create_key": key})
    assert first.status_code == second.status_code == 302
    assert ApiToken.objects.filter(user=user).count() == 1
    body = signed_in.get(second["Location"]).content.decode()
    token = re.search(r'data-testid="new-token">(stf_[^<]+)<', body).group(1)
    assert ApiToken.objects.get(user=user).prefix == token[:10]
    assert "This form was already sent: one token was created." in body
    # A fresh form (a new key) makes a new token.
    fresh = re.search(r'name="create_key" value="([0-9a-f-]{36})"', body).group(1)
    assert fresh != key
    signed_in.post("/accounts/tokens/", {"name": "phone", "create_key": fresh})
    assert ApiToken.objects.filter(user=user).count() == 2
