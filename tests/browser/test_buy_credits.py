"""Buying credits in real Chromium with the offline test checkout: the header shows both
buckets, the success page turns into the new balance by itself."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from credits.models import Purchase
from credits.reconcile import find_ledger_problems
from tests.browser.conftest import screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_buy_a_pack_through_the_offline_checkout_and_see_both_buckets(page, settings, seeded_packs):
    settings.STRIPE_SECRET_KEY = ""
    settings.OFFLINE_CHECKOUT = True
    sign_in(page, "demo@example.com")
    expect(page.get_by_test_id("balance-buckets")).to_have_text(f"· {settings.DAILY_CREDITS} free today · 0 bought")

    page.goto("/accounts/")
    page.get_by_test_id("buy-credits").click()
    expect(page.get_by_test_id("buy-starter")).to_be_visible()
    screenshot(page, "buy-credits", full_page=False)
    page.get_by_test_id("buy-starter").click()
    expect(page.get_by_role("heading", name="Test checkout: no money moves")).to_be_visible()
    screenshot(page, "test-checkout", full_page=False)
    page.get_by_test_id("test-pay").click()

    expect(page.get_by_test_id("purchase-status")).to_have_attribute("data-status", "paid")
    expect(page.get_by_test_id("new-balance")).to_contain_text(f"{settings.DAILY_CREDITS + 50} credits")
    expect(page.get_by_test_id("balance-buckets")).to_have_text(f"· {settings.DAILY_CREDITS} free today · 50 bought")
    page.goto("/accounts/")
    expect(page.get_by_test_id("purchases")).to_contain_text("Paid")
    assert Purchase.objects.get().status == "paid"
    assert find_ledger_problems() == []


def test_the_success_page_turns_into_the_balance_without_a_reload(page, settings, seeded_packs):
    """A purchase still pending when the page opens (the webhook not in yet) is shown as
    "adding your credits…" and the page updates itself once it is paid."""
    from credits.payments.purchases import purchase_grant
    from stefna.accounts.models import User

    settings.STRIPE_SECRET_KEY = ""
    settings.OFFLINE_CHECKOUT = True
    sign_in(page, "waiter@example.com")
    page.goto("/credits/")
    page.get_by_test_id("buy-starter").click()
    purchase = Purchase.objects.get(user=User.objects.get(email="waiter@example.com"))

    page.goto(f"/credits/purchases/{purchase.pk}/")
    expect(page.get_by_text("Payment received, adding your credits…")).to_be_visible()
    page.evaluate("window.__same_page = true")
    purchase_grant(purchase_id=purchase.pk, amount=purchase.price, currency=purchase.currency)

    expect(page.get_by_test_id("new-balance")).to_be_visible(timeout=10_000)
    assert page.evaluate("window.__same_page") is True, "the page reloaded"
    expect(page.get_by_test_id("balance-buckets")).to_have_text(f"· {settings.DAILY_CREDITS} free today · 50 bought")


def test_continue_to_payment_goes_back_to_the_test_checkout(page, settings, seeded_packs):
    """The buyer left the checkout unpaid: the account page's pending row takes them back
    to that same checkout, which completes the one purchase."""
    settings.STRIPE_SECRET_KEY = ""
    settings.OFFLINE_CHECKOUT = True
    sign_in(page, "returner@example.com")
    page.goto("/credits/")
    page.get_by_test_id("buy-starter").click()
    expect(page.get_by_role("heading", name="Test checkout: no money moves")).to_be_visible()

    page.goto("/accounts/")
    page.get_by_role("button", name="Continue to payment").click()
    expect(page.get_by_role("heading", name="Test checkout: no money moves")).to_be_visible()
    page.get_by_test_id("test-pay").click()

    expect(page.get_by_test_id("purchase-status")).to_have_attribute("data-status", "paid")
    page.goto("/accounts/")
    expect(page.get_by_role("button", name="Continue to payment")).to_have_count(0)
    assert list(Purchase.objects.values_list("status", flat=True)) == ["paid"], "one purchase, paid once"
    assert find_ledger_problems() == []


def test_continue_to_payment_in_indonesian_reopens_the_stripe_session_or_shows_it_paid(
    page, settings, seeded_packs, fake_stripe, live_server
):
    from credits.payments.purchases import purchase_start
    from stefna.accounts.models import User

    # Stripe's hosted page is the fake's here; browsers hold a form's redirect to form-action.
    settings.SECURE_CSP = {**settings.SECURE_CSP, "form-action": [*settings.SECURE_CSP["form-action"], fake_stripe.url]}
    sign_in(page, "kembali@example.com")
    User.objects.filter(email="kembali@example.com").update(language="id")
    purchase = purchase_start(
        user=User.objects.get(email="kembali@example.com"), pack_slug="starter", site_url=live_server.url
    )

    page.goto("/accounts/")
    expect(page.get_by_test_id("purchases")).to_contain_text("Menunggu")
    page.get_by_role("button", name="Lanjutkan ke pembayaran").click()
    page.wait_for_url(fake_stripe.sessions[purchase.stripe_session_id]["url"])

    fake_stripe.pay(purchase.stripe_session_id)  # paid; its webhook has not come yet
    page.goto("/accounts/")
    page.get_by_role("button", name="Lanjutkan ke pembayaran").click()
    expect(page.get_by_test_id("purchase-status")).to_have_attribute("data-status", "paid")
    expect(page.get_by_test_id("new-balance")).to_contain_text("Saldomu")
    assert list(Purchase.objects.values_list("status", flat=True)) == ["paid"]
    assert find_ledger_problems() == []
