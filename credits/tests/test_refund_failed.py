"""A refund that fails or is canceled at Stripe (`charge.refund.updated` with the refund's
`status` `failed` or `canceled`): the money stayed with us, so the credits its
`charge.refunded` took come back and the purchase reads paid again. Every event is a real
signed delivery to `POST /api/stripe/webhook`, the SDK talks to the fake Stripe, and
every test checks the ledger."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from credits import ledger
from credits.models import CreditEntry, StripeEvent
from credits.tests.stripe_helpers import assert_clean, deliver, purchased


def spend(user, amount):  # type: ignore[no-untyped-def]
    """Spend credits the way generations do: today's free ones first."""
    ledger.grant(user=user, amount=-amount, reason=CreditEntry.Reason.ADJUST, note="test: spend")


def state(purchase):  # type: ignore[no-untyped-def]
    purchase.refresh_from_db()
    return purchase.status, purchase.amount_refunded, purchase.credits_taken_back, purchase.credits_already_spent


def refund(fake_stripe, purchase, amount=None):  # type: ignore[no-untyped-def]
    """Refund at Stripe (as the dashboard does) and deliver its `charge.refunded`; returns the refund."""
    charge = fake_stripe.refund(purchase.stripe_payment_intent_id, amount)
    assert deliver("charge.refunded", charge).json()["outcome"] == "taken_back"
    return fake_stripe.refunds[-1]


@pytest.mark.parametrize("ending", ["failed", "canceled"])
def test_a_failed_refund_gives_the_credits_back_once_and_the_purchase_is_paid_again(
    paid_purchase, user, fake_stripe, ending
):
    made = refund(fake_stripe, paid_purchase)
    assert state(paid_purchase) == ("refunded", 499, 50, 0) and purchased(user) == 0

    updated = fake_stripe.fail_refund(made["id"], ending)
    answer = deliver("charge.refund.updated", updated, event_id="evt_refund_failed")
    again = deliver("charge.refund.updated", updated, event_id="evt_refund_failed")  # the same delivery twice
    other = deliver("charge.refund.updated", updated)  # another update of the same refund

    assert [answer.json()["outcome"], again.json()["outcome"], other.json()["outcome"]] == [
        "refund_reversed",
        "duplicate",
        "already_done",
    ]
    assert state(paid_purchase) == ("paid", 0, 0, 0), "the money stayed with us: paid, nothing refunded"
    assert purchased(user) == 50
    given_back = CreditEntry.objects.filter(purchase=paid_purchase, reason="refund_reversed")
    assert list(given_back.values_list("amount", "purchased_amount")) == [(50, 50)]
    assert paid_purchase.needs_attention and "the buyer did not get that money back" in paid_purchase.attention_note
    assert_clean(user)


def test_spent_credits_are_forgiven_before_any_taken_one_comes_back(paid_purchase, user, fake_stripe):
    spend(user, 40)  # the 30 free credits, then 10 bought ones: 40 bought left
    made = refund(fake_stripe, paid_purchase)
    assert state(paid_purchase) == ("refunded", 499, 40, 10) and purchased(user) == 0

    deliver("charge.refund.updated", fake_stripe.fail_refund(made["id"]))

    assert state(paid_purchase) == ("paid", 0, 0, 0), "the 10 spent are paid for after all"
    assert purchased(user) == 40, "exactly what the buyer held before the refund"
    assert_clean(user)


def test_a_failure_delivered_before_its_refund_event_leaves_the_credits_alone(paid_purchase, user, fake_stripe):
    charge = fake_stripe.refund(paid_purchase.stripe_payment_intent_id)
    failed = fake_stripe.fail_refund(fake_stripe.refunds[-1]["id"])

    # Stripe does not deliver in order: the failure first, then the refund's own event,
    # whose charge still says 499 refunded.
    assert deliver("charge.refund.updated", failed).json()["outcome"] == "already_done"
    assert deliver("charge.refunded", charge).json()["outcome"] == "already_done"

    assert state(paid_purchase) == ("paid", 0, 0, 0) and purchased(user) == 50
    assert not CreditEntry.objects.filter(purchase=paid_purchase, reason__in=["clawback", "refund_reversed"]).exists()
    assert_clean(user)


def test_one_failed_partial_refund_among_several_undoes_only_its_own_share(paid_purchase, user, fake_stripe):
    refund(fake_stripe, paid_purchase, amount=200)  # ceil(50 × 200 / 499) = 21 credits
    second = refund(fake_stripe, paid_purchase, amount=299)  # the rest: all 50 taken
    assert state(paid_purchase) == ("refunded", 499, 50, 0)

    deliver("charge.refund.updated", fake_stripe.fail_refund(second["id"]))

    assert state(paid_purchase) == ("paid", 200, 21, 0), "the first refund still stands"
    assert purchased(user) == 29
    # A later refund of the rest takes its share again.
    refund(fake_stripe, paid_purchase, amount=299)
    assert state(paid_purchase) == ("refunded", 499, 50, 0) and purchased(user) == 0
    assert_clean(user)


def test_a_refund_failing_while_a_dispute_is_open_comes_back_only_if_the_dispute_is_won(
    paid_purchase, user, fake_stripe
):
    made = refund(fake_stripe, paid_purchase, amount=250)  # 26 credits taken
    dispute = fake_stripe.dispute(paid_purchase.stripe_payment_intent_id)
    deliver("charge.dispute.created", dispute)  # takes the other 24
    assert state(paid_purchase) == ("disputed", 250, 50, 0) and purchased(user) == 0

    assert deliver("charge.refund.updated", fake_stripe.fail_refund(made["id"])).json()["outcome"] == (
        "refund_reversed"
    )
    assert state(paid_purchase) == ("disputed", 0, 50, 0) and purchased(user) == 0, "the dispute holds every credit"
    assert_clean(user)

    deliver("charge.dispute.closed", fake_stripe.close_dispute(dispute["id"], "won"))

    assert state(paid_purchase) == ("paid", 0, 0, 0) and purchased(user) == 50, "nothing was refunded in the end"
    assert_clean(user)


def test_a_refund_event_for_a_payment_we_do_not_know_is_acknowledged(user, fake_stripe):
    payment = fake_stripe.pay_elsewhere()  # no Stefna checkout made it: no purchase id anywhere
    fake_stripe.refund(payment)
    unknown = fake_stripe.fail_refund(fake_stripe.refunds[-1]["id"])

    answer = deliver("charge.refund.updated", unknown)

    assert answer.status_code == 200 and answer.json()["outcome"] == "unknown_purchase"
    assert not CreditEntry.objects.filter(reason="refund_reversed").exists()


def test_a_refund_event_stripe_cannot_confirm_is_refused_and_applied_on_its_retry(paid_purchase, user, fake_stripe):
    made = refund(fake_stripe, paid_purchase)
    failed = fake_stripe.fail_refund(made["id"])
    fake_stripe.fail_requests(500)

    first = deliver("charge.refund.updated", failed, event_id="evt_retried")

    assert first.status_code == 502 and not StripeEvent.objects.filter(pk="evt_retried").exists()
    assert state(paid_purchase) == ("refunded", 499, 50, 0), "nothing guessed while Stripe cannot say"
    fake_stripe.fail_requests(None)
    assert deliver("charge.refund.updated", failed, event_id="evt_retried").json()["outcome"] == "refund_reversed"
    assert state(paid_purchase) == ("paid", 0, 0, 0) and purchased(user) == 50
    assert_clean(user)


@pytest.mark.parametrize(
    ("amount", "purchased_amount", "with_purchase"),
    [
        (-5, -5, True),  # a return gives credits, never takes them
        (5, 0, True),  # into the purchased bucket, all of it
        (5, 5, False),  # it names the purchase whose refund failed
    ],
)
def test_the_database_refuses_a_refund_return_that_contradicts_its_reason(
    paid_purchase, user, amount, purchased_amount, with_purchase
):
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditEntry.objects.create(
            user=user,
            amount=amount,
            purchased_amount=purchased_amount,
            reason=CreditEntry.Reason.REFUND_REVERSED,
            purchase=paid_purchase if with_purchase else None,
            balance_after=100,
            purchased_after=50,
        )
