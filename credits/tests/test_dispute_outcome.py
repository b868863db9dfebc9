"""How a dispute ends. Won (or an inquiry closed without a chargeback): the buyer paid
after all, so what the dispute took comes back, exactly once, and the purchase is paid
again. Lost: the money went back to the cardholder and nothing changes. Every event is
a real signed delivery to `POST /api/stripe/webhook`; every test checks the ledger."""

from __future__ import annotations

import pytest
from django.db import connection

from credits import ledger
from credits.models import CreditEntry
from credits.selectors import quota_for
from credits.tests.stripe_helpers import assert_clean, deliver, purchased
from tests.databases import thread_recording


def spend(user, amount):  # type: ignore[no-untyped-def]
    """Spend credits the way generations do: today's free ones first."""
    ledger.grant(user=user, amount=-amount, reason=CreditEntry.Reason.ADJUST, note="test: spend")


def taken_state(purchase):  # type: ignore[no-untyped-def]
    purchase.refresh_from_db()
    return purchase.status, purchase.credits_taken_back, purchase.credits_already_spent


@pytest.mark.parametrize("first", ["charge.dispute.closed", "charge.dispute.funds_reinstated"])
def test_a_won_dispute_gives_back_exactly_what_it_took_once(paid_purchase, user, fake_stripe, first):
    spend(user, 40)  # the 30 free credits, then 10 bought ones: 40 bought left
    dispute = fake_stripe.dispute(paid_purchase.stripe_payment_intent_id)
    assert deliver("charge.dispute.created", dispute).json()["outcome"] == "taken_back"
    assert taken_state(paid_purchase) == ("disputed", 40, 10) and purchased(user) == 0

    won = fake_stripe.close_dispute(dispute["id"], "won")
    answer = deliver(first, won, event_id="evt_dispute_won")
    again = deliver(first, won, event_id="evt_dispute_won")  # Stripe delivers it twice
    other = "charge.dispute.funds_reinstated" if first == "charge.dispute.closed" else "charge.dispute.closed"
    both = deliver(other, won)  # Stripe sends both events for a won dispute

    assert (answer.json()["outcome"], again.json()["outcome"], both.json()["outcome"]) == (
        "restored",
        "duplicate",
        "already_done",
    )
    assert taken_state(paid_purchase) == ("paid", 0, 0), "as before the dispute: the buyer paid for all 50"
    assert purchased(user) == 40, "the 40 taken come back; the 10 spent were paid for"
    given_back = CreditEntry.objects.filter(purchase=paid_purchase, reason="dispute_won")
    assert list(given_back.values_list("amount", "purchased_amount")) == [(40, 40)]
    assert "won" in paid_purchase.attention_note
    assert_clean(user)


def test_a_lost_dispute_gives_nothing_back(paid_purchase, user, fake_stripe):
    dispute = fake_stripe.dispute(paid_purchase.stripe_payment_intent_id)
    deliver("charge.dispute.created", dispute)

    answer = deliver("charge.dispute.closed", fake_stripe.close_dispute(dispute["id"], "lost"))

    assert answer.status_code == 200 and answer.json()["outcome"] == "dispute_lost"
    assert taken_state(paid_purchase) == ("disputed", 50, 0) and purchased(user) == 0
    assert not CreditEntry.objects.filter(purchase=paid_purchase, reason="dispute_won").exists()
    assert_clean(user)


def test_a_won_dispute_after_a_partial_refund_gives_back_only_the_disputes_share(paid_purchase, user, fake_stripe):
    deliver("charge.refunded", fake_stripe.refund(paid_purchase.stripe_payment_intent_id, amount=250))
    assert taken_state(paid_purchase) == ("paid", 26, 0) and purchased(user) == 24
    spend(user, 40)  # 30 free, then 10 bought: 14 bought left
    dispute = fake_stripe.dispute(paid_purchase.stripe_payment_intent_id)
    deliver("charge.dispute.created", dispute)
    assert taken_state(paid_purchase) == ("disputed", 40, 10) and purchased(user) == 0

    deliver("charge.dispute.closed", fake_stripe.close_dispute(dispute["id"], "won"))

    assert taken_state(paid_purchase) == ("paid", 26, 0), "the partial refund still stands"
    assert purchased(user) == 14
    assert_clean(user)


def test_an_inquiry_refunded_in_full_gives_nothing_back_when_it_closes(paid_purchase, user, fake_stripe):
    inquiry = fake_stripe.dispute(paid_purchase.stripe_payment_intent_id, status="warning_needs_response")
    deliver("charge.dispute.created", inquiry)
    deliver("charge.refunded", fake_stripe.refund(paid_purchase.stripe_payment_intent_id))

    deliver("charge.dispute.closed", fake_stripe.close_dispute(inquiry["id"], "warning_closed"))

    assert taken_state(paid_purchase) == ("refunded", 50, 0), "the buyer got the money back: no credits"
    assert purchased(user) == 0 and quota_for(user=user).remaining == 30
    assert_clean(user)


def test_an_inquiry_that_closes_without_a_chargeback_gives_the_credits_back(paid_purchase, user, fake_stripe):
    inquiry = fake_stripe.dispute(paid_purchase.stripe_payment_intent_id, status="warning_needs_response")
    deliver("charge.dispute.created", inquiry)

    deliver("charge.dispute.closed", fake_stripe.close_dispute(inquiry["id"], "warning_closed"))

    assert taken_state(paid_purchase) == ("paid", 0, 0) and purchased(user) == 50
    assert_clean(user)


# --- events out of order -------------------------------------------------------------------


@pytest.mark.parametrize("ending", ["won", "warning_closed"])
def test_a_dispute_whose_favourable_ending_arrives_before_its_opening_takes_nothing(
    paid_purchase, user, fake_stripe, ending
):
    # Stripe does not promise order: the opening's delivery failed and is retried after
    # the ending was delivered.
    dispute = fake_stripe.dispute(paid_purchase.stripe_payment_intent_id)
    closed = fake_stripe.close_dispute(dispute["id"], ending)
    deliver("charge.dispute.closed", closed)

    late = deliver("charge.dispute.created", dispute).json()["outcome"]

    assert late == "already_done"
    assert taken_state(paid_purchase) == ("paid", 0, 0)
    assert purchased(user) == 50, "the merchant kept the money: the buyer keeps the credits"
    assert_clean(user)


def test_a_lost_dispute_whose_ending_arrives_first_still_takes_the_credits_back(paid_purchase, user, fake_stripe):
    dispute = fake_stripe.dispute(paid_purchase.stripe_payment_intent_id)
    deliver("charge.dispute.closed", fake_stripe.close_dispute(dispute["id"], "lost"))

    assert deliver("charge.dispute.created", dispute).json()["outcome"] == "taken_back"

    assert taken_state(paid_purchase) == ("disputed", 50, 0) and purchased(user) == 0
    assert_clean(user)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_dispute_won_while_its_opening_waits_for_stripes_answer_takes_nothing(
    seeded_packs, paid_purchase, user, fake_stripe
):
    """The opening's delivery asks Stripe how the dispute stands; Stripe's answer (still
    open) is on its way when the dispute is won and its ending is delivered and handled.
    The opening must not then take the credits of a buyer whose payment we kept."""
    if connection.vendor != "postgresql":
        pytest.skip(
            "PostgreSQL only: SQLite runs one writing transaction at a time, so the ending can "
            "never be handled while the opening's transaction is still to commit"
        )
    dispute = fake_stripe.dispute(paid_purchase.stripe_payment_intent_id)
    ending: list[object] = []

    ending_delivery = thread_recording(
        lambda: deliver("charge.dispute.closed", fake_stripe.close_dispute(dispute["id"], "won")).status_code, ending
    )

    def won_while_the_answer_travels(method: str, path: str) -> None:
        if method == "GET" and path.endswith(dispute["id"]):
            fake_stripe.after_answer = None
            ending_delivery.start()
            ending_delivery.join(5)  # handled meanwhile, unless it waits for the opening

    fake_stripe.after_answer = won_while_the_answer_travels

    opening = deliver("charge.dispute.created", dispute)
    ending_delivery.join(20)

    assert opening.status_code == 200 and ending == [200]
    assert taken_state(paid_purchase) == ("paid", 0, 0)
    assert purchased(user) == 50, "the merchant kept the money: the buyer keeps the credits"
    assert_clean(user)
