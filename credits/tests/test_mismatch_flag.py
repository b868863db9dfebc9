"""A payment that does not match its purchase stays pending and is flagged for staff once
per mismatch: reconciliation meets it every round, and "mark as reviewed" must stick. The
fact is recorded on the purchase (`mismatch_flagged`), whatever the notes say."""

from __future__ import annotations

import importlib

from django.apps import apps

from credits.models import Purchase
from credits.payments.purchases import flag_for_staff, purchase_mark_reviewed, purchase_reconcile_pending
from credits.tests.stripe_helpers import assert_clean, deliver, purchased, start_checkout


def reviewed_mismatch(api_client, fake_stripe, settings):  # type: ignore[no-untyped-def]
    settings.PURCHASE_RECONCILE_AFTER_SECONDS = 0
    purchase = start_checkout(api_client)
    fake_stripe.pay(purchase.stripe_session_id, amount=1)
    assert purchase_reconcile_pending() == {"amount_mismatch": 1}
    purchase.refresh_from_db()
    assert purchase.needs_attention and purchase.mismatch_flagged == "amount:1:usd"
    purchase_mark_reviewed(purchase=purchase)
    return purchase


def test_a_reviewed_mismatch_stays_reviewed_after_its_note_has_scrolled_away(api_client, fake_stripe, settings):
    purchase = reviewed_mismatch(api_client, fake_stripe, settings)
    # Later alerts push the first line out of the note (it keeps its last 5000 characters).
    with_lock = Purchase.objects.get(pk=purchase.pk)
    for n in range(60):
        flag_for_staff(with_lock, f"an unrelated alert number {n}, long enough to fill the note quickly " * 2)
    purchase_mark_reviewed(purchase=with_lock)
    assert "Not granted" not in Purchase.objects.get(pk=purchase.pk).attention_note

    assert purchase_reconcile_pending() == {"amount_mismatch": 1}

    purchase.refresh_from_db()
    assert not purchase.needs_attention, "the same mismatch is not raised again"


def test_a_different_mismatch_of_a_reviewed_purchase_is_flagged_again(api_client, user, fake_stripe, settings):
    purchase = reviewed_mismatch(api_client, fake_stripe, settings)
    session = dict(fake_stripe.sessions[purchase.stripe_session_id], amount_total=2, currency="eur")

    assert deliver("checkout.session.completed", session).json()["outcome"] == "amount_mismatch"

    purchase.refresh_from_db()
    assert purchase.needs_attention and purchase.mismatch_flagged == "amount:2:eur"
    assert purchase.attention_note.count("Not granted") == 2 and purchased(user) == 0
    assert_clean(user)


def test_other_alerts_still_come_back_after_a_review(paid_purchase, user, fake_stripe):
    purchase_mark_reviewed(purchase=paid_purchase)
    deliver("charge.refunded", fake_stripe.refund(paid_purchase.stripe_payment_intent_id, amount=100))
    dispute = fake_stripe.dispute(paid_purchase.stripe_payment_intent_id)

    deliver("charge.dispute.created", dispute)

    paid_purchase.refresh_from_db()
    assert paid_purchase.needs_attention and paid_purchase.mismatch_flagged == ""


def test_the_migration_records_mismatches_flagged_before_it_from_their_notes(api_client, fake_stripe, settings):
    migration = importlib.import_module("credits.migrations.0013_purchase_mismatch_flagged")
    purchase = start_checkout(api_client)
    other = start_checkout(api_client)
    notes = {
        purchase.pk: "2026-12-01 10:00 UTC: Not granted: paid 1 USD but the purchase costs 499 USD.\n"
        "2026-12-01 11:00 UTC: Not granted: paid session cs_test_x is not this purchase's session cs_test_y.",
        other.pk: "2026-12-01 10:00 UTC: Not granted: paid 700 ? but the purchase costs 499 USD.",
    }
    for pk, note in notes.items():
        Purchase.objects.filter(pk=pk).update(attention_note=note, needs_attention=False)

    migration.record_flagged_mismatches(apps, None)

    assert Purchase.objects.get(pk=purchase.pk).mismatch_flagged == "session:cs_test_x", "the latest line"
    assert Purchase.objects.get(pk=other.pk).mismatch_flagged == "amount:700:"
