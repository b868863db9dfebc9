"""A refund or dispute that arrives while bought credits are reserved for generations
still running: those credits are not spent yet. If the generations fail or are
canceled, the credits come back, and they belong to the refund, not to the buyer who
has their money back. Through the wire: Stripe's events signed, the API's start and cancel."""

from __future__ import annotations

import pytest

from credits import ledger
from credits.models import CreditEntry, Purchase
from credits.selectors import quota_for
from credits.tests.stripe_helpers import assert_clean, deliver, purchased
from generation.models import Generation
from generation.services import generation_fail
from generation.tests.api_support import photo
from presets.models import Preset
from presets.tests.factories import PresetFactory


@pytest.fixture(autouse=True)
def _no_rate_limit(settings):
    settings.RATE_LIMIT_GENERATIONS = (1000, 60)


def spend_free_and_hold_bought(api_client, user, generations: int) -> list[str]:
    """All of today's free credits spent; `generations` started on bought credits."""
    if free := quota_for(user=user).remaining:
        ledger.grant(user=user, amount=-free, reason=CreditEntry.Reason.ADJUST, note="spent")
    if not Preset.objects.filter(slug="oil").exists():
        PresetFactory(slug="oil")
    started = []
    for _ in range(generations):
        response = api_client.post("/api/generations", {"image": photo(), "preset": "oil"})
        assert response.status_code == 202, response.content
        started.append(response.json()["id"])
    return started


def cancel_all(api_client, generation_ids: list[str]) -> None:
    for generation_id in generation_ids:
        assert api_client.post(f"/api/generations/{generation_id}/cancel").status_code == 200


def test_credits_reserved_at_a_full_refund_are_taken_back_when_their_generations_are_canceled(
    paid_purchase, api_client, user, fake_stripe
):
    held = spend_free_and_hold_bought(api_client, user, 5)  # 10 of the 50 bought credits
    assert purchased(user) == 40

    deliver("charge.refunded", fake_stripe.refund(paid_purchase.stripe_payment_intent_id))
    paid_purchase.refresh_from_db()
    assert (paid_purchase.credits_taken_back, paid_purchase.credits_already_spent) == (40, 10)

    cancel_all(api_client, held)

    paid_purchase.refresh_from_db()
    assert purchased(user) == 0, "the buyer got the money back; the credits go with it"
    assert (paid_purchase.status, paid_purchase.credits_taken_back, paid_purchase.credits_already_spent) == (
        "refunded",
        50,
        0,
    )
    assert api_client.get("/api/quota").json()["currentBalance"] == 0
    assert_clean(user)


def test_reserved_credits_that_are_delivered_stay_spent(paid_purchase, api_client, user, fake_stripe):
    held = spend_free_and_hold_bought(api_client, user, 2)
    deliver("charge.refunded", fake_stripe.refund(paid_purchase.stripe_payment_intent_id))
    delivered = Generation.objects.get(pk=held[0])
    Generation.objects.filter(pk=delivered.pk).update(status=Generation.Status.SUCCEEDED)
    ledger.capture(generation=delivered)

    cancel_all(api_client, held[1:])

    paid_purchase.refresh_from_db()
    assert (paid_purchase.credits_taken_back, paid_purchase.credits_already_spent) == (48, 2)
    assert purchased(user) == 0 and paid_purchase.needs_attention
    assert_clean(user)


def test_a_generation_started_after_the_refund_on_other_credits_is_refunded_to_the_buyer(
    paid_purchase, api_client, user, fake_stripe
):
    held = spend_free_and_hold_bought(api_client, user, 1)
    Generation.objects.filter(pk=held[0]).update(status=Generation.Status.SUCCEEDED)
    ledger.capture(generation=Generation.objects.get(pk=held[0]))
    deliver("charge.refunded", fake_stripe.refund(paid_purchase.stripe_payment_intent_id))
    ledger.grant(user=user, amount=10, note="goodwill")
    later = spend_free_and_hold_bought(api_client, user, 1)

    generation_fail(generation=Generation.objects.get(pk=later[0]), code="provider_error", message="fal said no")

    paid_purchase.refresh_from_db()
    assert (paid_purchase.credits_taken_back, paid_purchase.credits_already_spent) == (48, 2)
    assert purchased(user) == 10, "the goodwill grant's credits were not the refunded pack's"
    assert_clean(user)


def test_credits_reserved_at_a_dispute_are_taken_when_canceled_and_all_come_back_if_it_is_won(
    paid_purchase, api_client, user, fake_stripe
):
    held = spend_free_and_hold_bought(api_client, user, 3)
    dispute = fake_stripe.dispute(paid_purchase.stripe_payment_intent_id)
    deliver("charge.dispute.created", dispute)
    cancel_all(api_client, held)

    paid_purchase.refresh_from_db()
    assert (paid_purchase.status, paid_purchase.credits_taken_back, paid_purchase.credits_already_spent) == (
        "disputed",
        50,
        0,
    )
    assert purchased(user) == 0

    won = fake_stripe.close_dispute(dispute["id"], "won")
    deliver("charge.dispute.closed", won)
    paid_purchase.refresh_from_db()
    assert (paid_purchase.status, paid_purchase.credits_taken_back, paid_purchase.credits_already_spent) == (
        "paid",
        0,
        0,
    )
    assert purchased(user) == 50
    assert Purchase.objects.get(pk=paid_purchase.pk).credits_in_flight == 0
    assert_clean(user)


@pytest.mark.django_db(transaction=True)
def test_a_refund_racing_the_cancels_of_its_reserved_generations_takes_every_credit_back(fake_stripe, seeded_packs):
    """The refund's event and five cancels at once, in threads (PostgreSQL: row locks; the
    order in which they commit must not matter)."""
    from django.test import Client

    from stefna.accounts.models import User
    from tests.fakes.stripe import FakeStripe, sign

    from .test_concurrency import _race

    user = User.objects.create_user(email="buyer@example.com")
    api_client = Client()
    api_client.force_login(user)
    response = api_client.post("/api/checkout", {"pack": "starter"}, content_type="application/json")
    purchase = Purchase.objects.get(pk=response.json()["purchase_id"])
    session = fake_stripe.pay(purchase.stripe_session_id)
    deliver("checkout.session.completed", session)
    held = spend_free_and_hold_bought(api_client, user, 5)
    purchase.refresh_from_db()
    refund = FakeStripe.event("charge.refunded", fake_stripe.refund(purchase.stripe_payment_intent_id))
    jobs = [refund] + held

    def work(job):  # type: ignore[no-untyped-def]
        client = Client()
        if isinstance(job, bytes):
            return client.post(
                "/api/stripe/webhook", data=job, content_type="application/json", HTTP_STRIPE_SIGNATURE=sign(job)
            ).status_code
        client.force_login(user)
        return client.post(f"/api/generations/{job}/cancel").status_code

    queue = list(jobs)
    outcomes = _race(lambda: work(queue.pop()), count=len(jobs))

    assert outcomes == [200] * len(jobs)
    purchase.refresh_from_db()
    assert (purchase.status, purchase.credits_taken_back, purchase.credits_already_spent) == ("refunded", 50, 0)
    assert purchased(user) == 0
    assert_clean(user)
