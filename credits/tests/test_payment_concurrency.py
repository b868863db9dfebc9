"""Twenty simultaneous deliveries of one Stripe event, and of different events about one
paid session: exactly one grant, and the ledger proves it (both databases; on PostgreSQL
the event's primary key and the purchase row lock make the deliveries queue, SQLite
serialises writing transactions)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from credits.models import CreditEntry, Purchase, StripeEvent
from credits.reconcile import find_ledger_problems
from credits.selectors import quota_for
from stefna.accounts.models import User
from tests.databases import thread_recording
from tests.fakes.stripe import FakeStripe, sign

from .test_concurrency import _race

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def paid_session(fake_stripe, seeded_packs):  # type: ignore[no-untyped-def]
    user = User.objects.create_user(email="buyer@example.com")
    client = Client()
    client.force_login(user)
    response = client.post("/api/checkout", {"pack": "starter"}, content_type="application/json")
    purchase = Purchase.objects.get(pk=response.json()["purchase_id"])
    return user, purchase, fake_stripe.pay(purchase.stripe_session_id)


def _deliver(payload: bytes) -> int:
    response = Client().post(
        "/api/stripe/webhook", data=payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=sign(payload)
    )
    return response.status_code


def test_twenty_concurrent_deliveries_of_one_event_grant_once(paid_session):
    user, purchase, session = paid_session
    payload = FakeStripe.event("checkout.session.completed", session, event_id="evt_raced")

    outcomes = _race(lambda: _deliver(payload))

    assert outcomes == [200] * 20
    assert CreditEntry.objects.filter(purchase=purchase, reason="purchase").count() == 1
    assert StripeEvent.objects.count() == 1
    assert quota_for(user=user).purchased_balance == 50
    assert find_ledger_problems() == []


def test_twenty_concurrent_different_events_for_one_session_grant_once(paid_session):
    user, purchase, session = paid_session

    outcomes = _race(lambda: _deliver(FakeStripe.event("checkout.session.completed", session)))

    assert outcomes == [200] * 20
    assert StripeEvent.objects.count() == 20
    assert list(StripeEvent.objects.filter(outcome="granted").values_list("purchase_id", flat=True)) == [purchase.pk]
    assert quota_for(user=user).purchased_balance == 50
    assert find_ledger_problems() == []


def test_continue_to_payment_racing_the_webhook_grants_once(paid_session):
    """The buyer presses "Continue to payment" (again and again) while Stripe's webhook for
    the paid session arrives: every path ends in the one grant, under the purchase's lock."""
    user, purchase, session = paid_session
    payload = FakeStripe.event("checkout.session.completed", session, event_id="evt_with_continue")
    continue_url = reverse("credits:purchase_continue", args=[purchase.pk])
    calls = iter(range(20))

    def press_or_deliver() -> int:
        if next(calls) % 2:
            return _deliver(payload)
        browser = Client()
        browser.force_login(user)
        return browser.post(continue_url).status_code

    outcomes = _race(press_or_deliver)

    assert sorted(outcomes) == [200] * 10 + [302] * 10
    assert CreditEntry.objects.filter(purchase=purchase, reason="purchase").count() == 1
    assert quota_for(user=user).purchased_balance == 50
    assert find_ledger_problems() == []


def test_continue_to_payment_holds_no_lock_while_it_asks_stripe(paid_session, fake_stripe):
    """While "Continue to payment" waits for Stripe's answer, the webhook for the same paid
    session arrives. It is granted then and there, not held up behind our network call
    (on SQLite, neither is any other write of the site), and Continue finds it paid."""
    user, purchase, session = paid_session
    payload = FakeStripe.event("checkout.session.completed", session, event_id="evt_during_continue")
    webhook: list[int] = []
    answered_meanwhile: list[bool] = []

    def webhook_while_stripe_answers(method: str, path: str) -> None:
        # On the fake's thread, before it answers Continue's look at the session.
        if method == "GET" and path.endswith(purchase.stripe_session_id):
            fake_stripe.on_request = None
            delivery = thread_recording(lambda: _deliver(payload), webhook)
            delivery.start()
            delivery.join(5)  # a held lock would keep it waiting past this
            answered_meanwhile.append(not delivery.is_alive())

    fake_stripe.on_request = webhook_while_stripe_answers
    browser = Client()
    browser.force_login(user)

    response = browser.post(reverse("credits:purchase_continue", args=[purchase.pk]), follow=True)

    assert answered_meanwhile == [True], "the webhook waited for Continue's call to Stripe"
    assert webhook == [200]
    assert response.redirect_chain == [(reverse("credits:purchase_done", args=[purchase.pk]), 302)]
    assert 'data-status="paid"' in response.content.decode()
    assert list(StripeEvent.objects.values_list("outcome", flat=True)) == ["granted"]
    assert CreditEntry.objects.filter(purchase=purchase, reason="purchase").count() == 1
    assert quota_for(user=user).purchased_balance == 50
    assert find_ledger_problems() == []
