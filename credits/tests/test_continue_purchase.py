""" "Continue to payment" on a pending purchase, over HTTP, through the fake Stripe: the
buyer is sent back to a checkout only while it can still take this purchase's money,
and a checkout that ended is settled by the writers every other path uses."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from credits.models import CreditEntry, Purchase
from credits.tests.stripe_helpers import assert_clean, deliver, purchased, start_checkout

ACCOUNT = reverse("accounts:account")


def continue_url(purchase):  # type: ignore[no-untyped-def]
    return reverse("credits:purchase_continue", args=[purchase.pk])


@pytest.fixture
def buyer(user):  # type: ignore[no-untyped-def]
    """The buyer's browser session (the API client carries their token)."""
    browser = Client()
    browser.force_login(user)
    return browser


def stripe_calls(fake_stripe):  # type: ignore[no-untyped-def]
    return [(method, path) for method, path, _params, _headers in fake_stripe.requests]


def test_an_open_checkout_sends_the_buyer_back_to_the_same_stripe_session(api_client, buyer, fake_stripe):
    purchase = start_checkout(api_client)
    fake_stripe.requests.clear()

    response = buyer.post(continue_url(purchase))

    assert response.status_code == 302
    assert response["Location"] == fake_stripe.sessions[purchase.stripe_session_id]["url"]
    assert stripe_calls(fake_stripe) == [("GET", f"/v1/checkout/sessions/{purchase.stripe_session_id}")], (
        "asked Stripe, created no second session"
    )
    assert Purchase.objects.get().status == "pending"


def test_a_session_paid_meanwhile_is_granted_once_through_the_one_grant(api_client, buyer, user, fake_stripe):
    """The webhook is late: continuing finds the session paid and grants it; the webhook
    that arrives afterwards changes nothing."""
    purchase = start_checkout(api_client)
    session = fake_stripe.pay(purchase.stripe_session_id)

    response = buyer.post(continue_url(purchase), follow=True)

    assert response.redirect_chain == [(reverse("credits:purchase_done", args=[purchase.pk]), 302)]
    assert 'data-status="paid"' in response.content.decode()
    purchase.refresh_from_db()
    assert purchase.status == "paid" and purchase.stripe_payment_intent_id == session["payment_intent"]
    assert purchased(user) == 50

    assert deliver("checkout.session.completed", session).status_code == 200
    assert buyer.post(continue_url(purchase)).status_code == 302
    assert purchased(user) == 50 and CreditEntry.objects.filter(reason="purchase").count() == 1
    assert_clean(user)


def test_an_expired_session_ends_the_purchase_expired_with_a_way_to_buy_again(api_client, buyer, user, fake_stripe):
    purchase = start_checkout(api_client)
    fake_stripe.expire(purchase.stripe_session_id)

    page = buyer.post(continue_url(purchase), follow=True, HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert Purchase.objects.get().status == "expired"
    assert "This checkout ended without a payment. Nothing was charged." in page
    assert f'href="{reverse("credits:buy")}"' in page
    assert purchased(user) == 0


def test_a_session_complete_but_not_yet_paid_stays_pending(api_client, buyer, fake_stripe):
    """A delayed payment method: Stripe has the order, the money is not in. Nothing is
    granted and the buyer is not sent to pay again."""
    purchase = start_checkout(api_client)
    fake_stripe.sessions[purchase.stripe_session_id].update(status="complete", payment_status="unpaid")

    response = buyer.post(continue_url(purchase))

    assert response["Location"] == reverse("credits:purchase_done", args=[purchase.pk])
    assert Purchase.objects.get().status == "pending" and not CreditEntry.objects.filter(reason="purchase").exists()


def test_a_purchase_no_longer_pending_just_shows_its_state(api_client, buyer, fake_stripe, paid_purchase):
    fake_stripe.requests.clear()

    response = buyer.post(continue_url(paid_purchase))

    assert response["Location"] == reverse("credits:purchase_done", args=[paid_purchase.pk])
    assert fake_stripe.requests == [], "nothing to ask Stripe"


def test_stripe_unreachable_says_so_and_changes_nothing(api_client, buyer, fake_stripe):
    purchase = start_checkout(api_client)
    fake_stripe.pay(purchase.stripe_session_id)
    fake_stripe.fail_requests(500)

    response = buyer.post(continue_url(purchase), follow=True, HTTP_ACCEPT_LANGUAGE="en")

    assert response.redirect_chain == [(ACCOUNT + "#purchases", 302)]
    assert "The payment provider did not answer. Nothing was charged; please try again." in response.content.decode()
    assert Purchase.objects.get().status == "pending" and not CreditEntry.objects.filter(reason="purchase").exists()


def test_stripe_unreachable_reads_in_indonesian(api_client, user, fake_stripe):
    purchase = start_checkout(api_client)
    fake_stripe.fail_requests(503)
    browser = Client()
    browser.force_login(user)
    user.language = "id"
    user.save(update_fields=["language"])

    page = browser.post(continue_url(purchase), follow=True).content.decode()

    assert "Penyedia pembayaran tidak merespons" in page


def test_a_purchase_without_a_session_cannot_be_continued_and_nothing_changes(api_client, buyer, fake_stripe):
    purchase = start_checkout(api_client)
    Purchase.objects.filter(pk=purchase.pk).update(stripe_session_id=None)  # the crash between the two writes
    fake_stripe.requests.clear()

    response = buyer.post(continue_url(purchase), follow=True, HTTP_ACCEPT_LANGUAGE="en")

    assert "This checkout can&#x27;t be continued. Nothing was charged" in response.content.decode()
    assert Purchase.objects.get().status == "pending" and fake_stripe.requests == []


def test_another_users_purchase_is_404_and_nothing_is_asked_or_changed(api_client, other_user, fake_stripe):
    purchase = start_checkout(api_client)
    fake_stripe.pay(purchase.stripe_session_id)
    fake_stripe.requests.clear()
    intruder = Client()
    intruder.force_login(other_user)

    assert intruder.post(continue_url(purchase)).status_code == 404
    assert Purchase.objects.get().status == "pending" and fake_stripe.requests == []


def test_it_is_a_post_only_action_for_the_signed_in(api_client, buyer, fake_stripe):
    purchase = start_checkout(api_client)

    assert buyer.get(continue_url(purchase)).status_code == 405
    assert Client().post(continue_url(purchase)).status_code == 302, "to sign in"
    assert Purchase.objects.get().status == "pending"


def test_the_account_page_offers_continue_only_on_a_pending_purchase(api_client, buyer, fake_stripe, paid_purchase):
    pending = start_checkout(api_client)

    page = buyer.get(ACCOUNT, HTTP_ACCEPT_LANGUAGE="en").content.decode()

    assert page.count('data-testid="continue-payment"') == 1
    assert f'action="{continue_url(pending)}"' in page and continue_url(paid_purchase) not in page
    status = buyer.get(reverse("credits:purchase_status", args=[pending.pk])).content.decode()
    assert f'action="{continue_url(pending)}"' in status


# --- the offline test checkout -------------------------------------------------------------


@pytest.fixture
def offline(settings):  # type: ignore[no-untyped-def]
    settings.STRIPE_SECRET_KEY = ""
    settings.OFFLINE_CHECKOUT = True
    return settings


def test_an_offline_purchase_goes_back_to_its_test_checkout(api_client, buyer, offline):
    purchase = start_checkout(api_client)

    response = buyer.post(continue_url(purchase))

    assert response["Location"] == reverse("credits:test_checkout", args=[purchase.pk])
    assert buyer.get(response["Location"]).status_code == 200
    assert Purchase.objects.get().status == "pending"


def test_an_offline_purchase_once_the_test_checkout_is_off_says_so(api_client, buyer, offline):
    purchase = start_checkout(api_client)
    offline.OFFLINE_CHECKOUT = False

    response = buyer.post(continue_url(purchase), follow=True, HTTP_ACCEPT_LANGUAGE="en")

    assert response.redirect_chain == [(ACCOUNT + "#purchases", 302)]
    assert "The test checkout is switched off on this site." in response.content.decode()
    assert Purchase.objects.get().status == "pending"
