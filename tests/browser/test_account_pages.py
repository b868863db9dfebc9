"""The account page and buying credits in real Chromium: how they look and read, at a
phone's width and a desktop's, in English and Bahasa Indonesia."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import expect

from stefna.accounts.models import User
from tests.browser.conftest import DESKTOP, PHONE

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def signed_in_page(browser, live_server, user: User, *, viewport=DESKTOP, locale: str = "en-US"):
    """A page with `user`'s session (the sign-in flow itself has its own tests)."""
    client = Client()
    client.force_login(user)
    context = browser.new_context(viewport=viewport, base_url=live_server.url, locale=locale)
    context.add_cookies(
        [
            {
                "name": settings.SESSION_COOKIE_NAME,
                "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                "url": live_server.url,
            }
        ]
    )
    context.set_default_timeout(15_000)
    return context, context.new_page()


def test_delete_my_account_looks_like_the_irreversible_action_it_is(browser, live_server):
    """The stylesheet had no rule for `.button.danger`: "Delete my account" was drawn as
    an ordinary white button, like "Download my data" above it."""
    user = User.objects.create_user(email="leaving@example.com")
    context, page = signed_in_page(browser, live_server, user)
    page.goto("/accounts/")
    delete = page.get_by_role("button", name="Delete my account")
    download = page.get_by_role("link", name="Download my data")
    expect(delete).to_be_visible()
    background = delete.evaluate("el => getComputedStyle(el).backgroundColor")
    assert background == "rgb(180, 35, 24)", background  # --danger
    assert background != download.evaluate("el => getComputedStyle(el).backgroundColor")
    assert delete.evaluate("el => getComputedStyle(el).color") == "rgb(255, 255, 255)"
    context.close()


@pytest.mark.parametrize("width", [PHONE["width"], 900], ids=["phone", "two-column account page"])
def test_the_credit_history_and_purchases_fit_their_card_in_indonesian(
    browser, live_server, settings, seeded_packs, width
):
    """At 390 px (and in a column of the 900 px layout) the ledger's Balance column and the
    purchases' Receipt column sat off to the right of a scroll box nobody noticed; in
    Indonesian "Keterangan" (why) was cut too. Each row now reads as two lines."""
    from credits import ledger
    from credits.payments.purchases import purchase_complete_offline, purchase_start

    settings.STRIPE_SECRET_KEY = ""
    settings.OFFLINE_CHECKOUT = True
    user = User.objects.create_user(email="dewi@example.com", language="id")
    purchase = purchase_start(user=user, pack_slug="creator", site_url="http://testserver/")
    purchase_complete_offline(user=user, purchase_id=purchase.pk)
    ledger.grant(user=user, amount=5, note="hadiah")
    balance = settings.DAILY_CREDITS + 150 + 5

    context, page = signed_in_page(browser, live_server, user, viewport={"width": width, "height": 900}, locale="id-ID")
    page.goto("/accounts/")
    for region in page.locator(".table-wrap").all():
        client_width, scroll_width = region.evaluate("el => [el.clientWidth, el.scrollWidth]")
        assert scroll_width <= client_width, (width, client_width, scroll_width)
    newest = page.get_by_test_id("ledger-row").first
    expect(newest).to_contain_text("Bonus")
    expect(newest.get_by_role("cell").last).to_have_text(str(balance))  # what a screen reader hears: no label twice
    assert (
        newest.get_by_role("cell").last.evaluate("el => getComputedStyle(el, '::before').content").startswith('"Saldo')
    )
    purchases = page.get_by_test_id("purchases")
    expect(purchases.get_by_role("row")).to_have_count(2)  # still a table: its header row and one purchase
    expect(purchases).to_contain_text("US$11,99")
    for cell in (newest.get_by_role("cell").last, purchases.get_by_text("US$11,99")):
        box = cell.bounding_box()
        assert box and box["x"] + box["width"] <= width, (width, box)
    context.close()


def test_a_double_click_on_buy_starts_one_checkout(browser, live_server, settings, seeded_packs):
    """Each click on "Buy" was a purchase and a checkout: the second stayed pending until it
    expired, and showed on the account page as a purchase never made."""
    from credits.models import Purchase

    settings.STRIPE_SECRET_KEY = ""
    settings.OFFLINE_CHECKOUT = True
    user = User.objects.create_user(email="double-buyer@example.com")
    context, page = signed_in_page(browser, live_server, user, viewport=PHONE)

    page.goto("/credits/")
    # Checkout answers in milliseconds here; over a real network the first click's request
    # is still on its way when the second comes. Hold it until both clicks are done.
    sent = []

    def hold(route):  # type: ignore[no-untyped-def]
        sent.append(route)

    page.route("**/credits/checkout/", hold)
    # The second click comes 100 ms after the first, from the page itself: Playwright's own
    # would wait for the first click's navigation to finish.
    page.evaluate(
        """() => {
        const buy = document.querySelector("[data-testid=buy-starter]");
        buy.addEventListener("click", () => setTimeout(() => buy.click(), 100), {once: true});
    }"""
    )
    page.get_by_test_id("buy-starter").click(no_wait_after=True)
    page.wait_for_timeout(400)
    assert len(sent) == 1, "the second click sent a second checkout request"
    sent[0].continue_()
    page.unroute("**/credits/checkout/", hold)
    expect(page.get_by_test_id("test-pay")).to_be_visible()

    assert Purchase.objects.filter(user=user).count() == 1
    # Back to the buy page (kept by the browser or loaded again): it buys again.
    page.go_back()
    page.get_by_test_id("buy-starter").click()
    expect(page.get_by_test_id("test-pay")).to_be_visible()
    assert Purchase.objects.filter(user=user).count() == 2
    context.close()


def test_the_test_checkout_cancel_back_and_double_click(browser, live_server, settings, seeded_packs):
    """Cancel says nothing was charged (the buy page said nothing at all); Back after paying
    shows the purchase, not a checkout to pay again; a double click buys once."""
    from credits.models import Purchase
    from credits.reconcile import find_ledger_problems
    from credits.selectors import quota_for

    settings.STRIPE_SECRET_KEY = ""
    settings.OFFLINE_CHECKOUT = True
    user = User.objects.create_user(email="buyer@example.com")
    context, page = signed_in_page(browser, live_server, user, viewport=PHONE)

    page.goto("/credits/")
    expect(page.get_by_test_id("checkout-canceled")).to_have_count(0)
    page.get_by_test_id("buy-starter").click()
    page.get_by_role("link", name="Cancel").click()
    expect(page.get_by_test_id("checkout-canceled")).to_have_text(
        "Checkout canceled: nothing was charged. Pick a pack whenever you like."
    )

    page.get_by_test_id("buy-starter").click()
    page.get_by_test_id("test-pay").dblclick()
    expect(page.get_by_test_id("purchase-status")).to_have_attribute("data-status", "paid")
    page.go_back()
    expect(page.get_by_test_id("purchase-status")).to_have_attribute("data-status", "paid")
    expect(page.get_by_test_id("test-pay")).to_have_count(0)

    paid = Purchase.objects.filter(user=user, status=Purchase.Status.PAID)
    assert paid.count() == 1
    assert quota_for(user=user).purchased_balance == 50
    assert find_ledger_problems() == []
    context.close()


def test_on_a_phone_use_a_different_email_is_as_easy_to_tap_as_the_button_beside_it(page):
    """On the code page "Use a different email" was a 22-px-high line of small text beside
    the 44-px "Send me a new code": a thumb aiming at it could land on the new code."""
    page.set_viewport_size(PHONE)
    page.goto("/accounts/sign-in/")
    page.get_by_label("Email address").fill("thumb@example.com")
    page.get_by_role("button", name="Email me a code").click()
    page.wait_for_url("**/accounts/code/**")

    other = page.get_by_role("link", name="Use a different email")
    height = other.bounding_box()["height"]
    assert height >= 44, f"the link is {height:.0f} px high"
    assert page.get_by_test_id("send-new-code").bounding_box()["height"] >= 44


def test_on_a_phone_a_new_api_token_is_in_sight_after_create_token(browser, live_server):
    """The new token is shown once, far down the account page; after "Create token" the
    page came back at its top, Profile and Credits in view, with no sign on the screen that
    anything had happened, and a phone user could leave without ever seeing the token."""
    user = User.objects.create_user(email="scripter@example.com")
    context, page = signed_in_page(browser, live_server, user, viewport=PHONE)
    page.goto("/accounts/")
    page.get_by_label("Token name").fill("my script")
    page.get_by_role("button", name="Create token").click()

    token = page.get_by_test_id("new-token")
    expect(token).to_be_visible()
    page.wait_for_timeout(200)  # any scroll to it is done
    box = token.bounding_box()
    header = page.locator(".site-header").bounding_box()  # sticky: it covers what scrolls under it
    top = header["y"] + header["height"]
    assert top <= box["y"] and box["y"] + box["height"] <= PHONE["height"], f"the token is at y={box['y']:.0f}"
    context.close()


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_header_s_balance_opens_the_credits_card_with_its_heading_clear_of_the_header(
    browser, live_server, viewport
):
    """The balance in the header links to /accounts/#credits (so do the statement's
    Older/Newer pages); the card scrolled to the very top of the window, under the sticky
    header, which hid its "Credits" heading and, on a phone, the balance itself."""
    from credits import ledger

    user = User.objects.create_user(email="counting@example.com")
    ledger.ensure_daily_allowance(user=user)
    context, page = signed_in_page(browser, live_server, user, viewport=viewport)
    page.goto("/history/")
    page.locator("#header-balance").click()
    page.wait_for_url("**/accounts/#credits")
    page.wait_for_timeout(200)  # the scroll to the card is done

    header = page.locator(".site-header").bounding_box()
    heading = page.get_by_role("heading", name="Credits", exact=True).bounding_box()
    assert page.evaluate("scrollY") > 0, "the page scrolled to the card (else the test proves nothing)"
    assert heading["y"] >= header["y"] + header["height"], (
        f"the heading at y={heading['y']:.0f} is under the header ending at {header['y'] + header['height']:.0f}"
    )
    context.close()
