"""A checkout its buyer pays after deleting the account: the money is Stripe's to return,
never credits on a closed account. The purchase stays paid, is never credited, and is
flagged for staff to refund; deleting the account ends its pending checkouts, here and
at Stripe. Every test checks the ledger (`find_ledger_problems`)."""

from __future__ import annotations

import json
import time

import pytest
from django.core import mail
from django.db import connection, transaction
from django.test import Client

from credits.models import CreditEntry, Purchase
from credits.payments.purchases import purchase_grant, purchase_start
from credits.payments.refunds import purchase_refund
from credits.reconcile import find_ledger_problems
from credits.tests.stripe_helpers import assert_clean, deliver, purchased, start_checkout
from stefna.accounts.deletion import account_delete
from stefna.accounts.models import User
from tests.databases import someone_waits_for_a_lock_held_here, thread_recording
from tests.tasks import run_tasks


def delete_account(user, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    """DELETE /api/me, as the owner does it, with what runs after its commit."""
    client = Client()
    client.force_login(user)
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.delete("/api/me", data=json.dumps({"confirm": user.email}), content_type="application/json")
    assert answer.status_code in (200, 204), answer.content
    user.refresh_from_db()
    assert not user.is_active


def test_deleting_the_account_expires_its_pending_checkouts_here_and_at_stripe(
    api_client, user, paid_purchase, fake_stripe, django_capture_on_commit_callbacks
):
    open_checkout = start_checkout(api_client, "creator")

    delete_account(user, django_capture_on_commit_callbacks)

    open_checkout.refresh_from_db()
    paid_purchase.refresh_from_db()
    assert open_checkout.status == "expired", "a webhook for it is now about a closed account's checkout"
    assert fake_stripe.sessions[open_checkout.stripe_session_id]["status"] == "expired", "nobody can pay it any more"
    expiry = [r for r in fake_stripe.requests if r[1].endswith(f"{open_checkout.stripe_session_id}/expire")]
    assert len(expiry) == 1 and expiry[0][3]["idempotency-key"] == f"stefna-expire-{open_checkout.pk}"
    assert paid_purchase.status == "paid" and purchased(user) == 50, "money records stay as they were"
    assert_clean(user)


def test_a_checkout_paid_after_the_account_was_deleted_is_flagged_for_a_refund_and_never_credited(
    api_client, user, fake_stripe, django_capture_on_commit_callbacks
):
    purchase = start_checkout(api_client)
    # The buyer pays on Stripe's page; the webhook is still on its way when the account goes
    # (Stripe then refuses to expire the completed session: the deletion goes on regardless).
    session = fake_stripe.pay(purchase.stripe_session_id)
    delete_account(user, django_capture_on_commit_callbacks)
    mail.outbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        answer = deliver("checkout.session.completed", session)

    assert answer.status_code == 200 and answer.json()["outcome"] == "account_closed"
    purchase.refresh_from_db()
    assert (purchase.status, purchase.paid_after_account_closed, purchase.needs_attention) == ("paid", True, True)
    assert purchase.paid_at is not None and purchase.stripe_payment_intent_id == session["payment_intent"]
    assert "account was closed" in purchase.attention_note and "Refund" in purchase.attention_note
    assert not CreditEntry.objects.filter(purchase=purchase).exists() and purchased(user) == 0
    assert mail.outbox == [], "no receipt saying credits were added"
    assert deliver("checkout.session.completed", session).json()["outcome"] == "already_done"
    assert_clean(user)

    # Staff refund it; Stripe's refund event has nothing to take back.
    purchase_refund(purchase=purchase)
    deliver("charge.refunded", fake_stripe.charge_of(purchase.stripe_payment_intent_id))
    purchase.refresh_from_db()
    assert (purchase.status, purchase.amount_refunded, purchase.credits_taken_back) == ("refunded", 499, 0)
    assert purchase.credits_already_spent == 0
    assert_clean(user)


def test_a_dispute_on_a_purchase_never_credited_takes_nothing_and_a_won_one_gives_nothing(
    api_client, user, fake_stripe, django_capture_on_commit_callbacks
):
    purchase = start_checkout(api_client)
    session = fake_stripe.pay(purchase.stripe_session_id)
    delete_account(user, django_capture_on_commit_callbacks)
    deliver("checkout.session.completed", session)

    dispute = fake_stripe.dispute(session["payment_intent"])
    deliver("charge.dispute.created", dispute)
    purchase.refresh_from_db()
    assert (purchase.status, purchase.credits_taken_back, purchase.credits_already_spent) == ("disputed", 0, 0)
    deliver("charge.dispute.closed", fake_stripe.close_dispute(dispute["id"], "won"))

    purchase.refresh_from_db()
    assert (purchase.status, purchase.credits_taken_back, purchase.credits_already_spent) == ("paid", 0, 0)
    assert not CreditEntry.objects.filter(purchase=purchase).exists()
    assert_clean(user)


@pytest.mark.django_db
def test_an_offline_checkout_completed_after_the_account_was_deleted_is_not_granted(user, settings):
    # The reliability review's reproduction, through the grant function itself.
    settings.OFFLINE_CHECKOUT = True
    purchase = purchase_start(user=user, pack_slug="starter", site_url="http://testserver/")
    account_delete(user=User.objects.get(pk=user.pk), confirm=user.email)
    assert Purchase.objects.get(pk=purchase.pk).status == "expired"

    outcome = purchase_grant(purchase_id=purchase.pk, amount=purchase.price, currency=purchase.currency)

    purchase.refresh_from_db()
    assert outcome == "account_closed" and purchase.status == "paid" and purchase.needs_attention
    assert purchased(user) == 0
    assert_clean(user)


def test_check_ledger_reports_a_purchase_paid_after_closing_that_was_credited_anyway(paid_purchase, user):
    Purchase.objects.filter(pk=paid_purchase.pk).update(paid_after_account_closed=True)

    problems = find_ledger_problems(users=[user])

    assert any(f"purchase {paid_purchase.pk} (paid): credited [50], expected []" in problem for problem in problems)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_payment_confirmed_while_the_deletion_commits_is_flagged_for_a_refund_not_credited(
    seeded_packs, api_client, user, fake_stripe
):
    """The webhook for a paid checkout arrives while the account's deletion is committing:
    the deletion has expired the purchase (and holds its row), the grant waits for that
    row. Once the deletion commits the grant must see the account closed, as it would had
    it arrived a moment later: the buyer's money is flagged for a refund, not left as
    credits on an account nobody can use."""
    if connection.vendor != "postgresql":
        pytest.skip(
            "PostgreSQL only: SQLite runs one writing transaction at a time, so the grant can "
            "never start while the deletion is still to commit"
        )
    purchase = start_checkout(api_client)
    session = fake_stripe.pay(purchase.stripe_session_id)
    answers: list[object] = []

    delivering = thread_recording(lambda: deliver("checkout.session.completed", session).json()["outcome"], answers)
    with transaction.atomic():
        # The deletion's transaction, done but not committed: the account is closed and the
        # purchase expired, its row locked until the commit.
        account_delete(user=User.objects.get(pk=user.pk), confirm=user.email)
        delivering.start()
        deadline = time.monotonic() + 10
        while not someone_waits_for_a_lock_held_here():
            assert time.monotonic() < deadline, "the grant never waited for the deletion"
            time.sleep(0.02)
    delivering.join(20)

    purchase.refresh_from_db()
    assert answers == ["account_closed"]
    assert (purchase.status, purchase.paid_after_account_closed, purchase.needs_attention) == ("paid", True, True)
    assert not CreditEntry.objects.filter(purchase=purchase).exists() and purchased(user) == 0
    assert_clean(user)


@pytest.mark.django_db(transaction=True)
def test_a_receipt_link_fetched_while_the_account_is_deleted_is_not_written_back(
    seeded_packs, api_client, user, fake_stripe
):
    """The payment is granted and its receipt goes out; while Stripe is asked for the
    receipt's link, the buyer deletes the account, which blanks that link with the email
    on every purchase (Stripe's receipt page opens for anyone holding it and shows the
    buyer). The link Stripe then answers is not written back on the closed account's
    purchase."""
    purchase = start_checkout(api_client)
    session = fake_stripe.pay(purchase.stripe_session_id)
    # Before the fake answers the receipt's look at the payment.
    deleted = _delete_while_stripe_answers(fake_stripe, user, "GET", session["payment_intent"])

    assert deliver("checkout.session.completed", session).status_code == 200
    run_tasks()  # the receipt's task, which asks Stripe for the link

    assert deleted == [None], "the deletion did not run while Stripe answered"
    purchase.refresh_from_db()
    assert purchase.status == "paid" and purchase.email == ""
    assert purchase.receipt_url == ""


@pytest.mark.django_db(transaction=True)
def test_a_checkout_whose_account_is_deleted_while_stripe_makes_its_session_is_closed_there_too(
    seeded_packs, api_client, user, fake_stripe
):
    """The purchase is made, then Stripe is asked for its Checkout Session; meanwhile the
    buyer deletes the account, which expires the purchase and blanks its addresses but
    cannot expire a session it does not know yet. That session (the buyer's email filled
    in) is expired at Stripe once it is known, its address is not written back on the
    closed account's purchase, and the buyer is not sent to pay it."""
    # Before the fake answers the session's creation.
    deleted = _delete_while_stripe_answers(fake_stripe, user, "POST", "/checkout/sessions")

    response = api_client.post("/api/checkout", {"pack": "starter"}, content_type="application/json")

    assert deleted == [None], "the deletion did not run while Stripe answered"
    assert response.status_code == 401, response.content
    (purchase,) = Purchase.objects.filter(user=user)
    assert (purchase.status, purchase.email, purchase.checkout_url) == ("expired", "", "")
    (session,) = fake_stripe.sessions.values()
    assert session["status"] == "expired", "the buyer's open checkout could still take money"


def _delete_while_stripe_answers(fake_stripe, user, method: str, path_end: str) -> list[object]:
    """Once, on the fake's thread, before it answers the first `method` request whose path
    ends with `path_end`: the buyer deletes the account (in a thread of its own, which
    ends before the answer goes). The list gets the deletion's outcome."""
    deleted: list[object] = []

    def delete_first(method_seen: str, path: str) -> None:
        if method_seen == method and path.endswith(path_end):
            fake_stripe.on_request = None
            deleting = thread_recording(
                lambda: account_delete(user=User.objects.get(pk=user.pk), confirm="ada@example.com"), deleted
            )
            deleting.start()
            deleting.join(10)

    fake_stripe.on_request = delete_first
    return deleted


def test_a_refund_delivered_before_the_completion_of_a_closed_accounts_checkout_ends_refunded_nothing_owed(
    api_client, user, fake_stripe, django_capture_on_commit_callbacks
):
    """Paid, then the account deleted (its purchase expired here), then refunded at Stripe:
    Stripe may deliver `charge.refunded` before `checkout.session.completed`. The purchase
    must end as Stripe left it (paid, refunded in full) with nothing left for staff to do,
    not "never paid" followed by "refund it" for money already returned."""
    purchase = start_checkout(api_client)
    session = fake_stripe.pay(purchase.stripe_session_id)
    delete_account(user, django_capture_on_commit_callbacks)
    charge = fake_stripe.refund(session["payment_intent"])  # from Stripe's dashboard

    assert deliver("charge.refunded", charge).status_code == 200
    deliver("checkout.session.completed", session)

    purchase.refresh_from_db()
    assert (purchase.status, purchase.amount_refunded, purchase.paid_after_account_closed) == ("refunded", 499, True)
    assert not purchase.needs_attention, purchase.attention_note
    assert "never paid" not in purchase.attention_note
    assert not CreditEntry.objects.filter(purchase=purchase).exists() and purchased(user) == 0
    assert_clean(user)


def test_a_dispute_delivered_before_the_completion_of_a_closed_accounts_checkout_is_recorded_disputed(
    api_client, user, fake_stripe, django_capture_on_commit_callbacks
):
    purchase = start_checkout(api_client)
    session = fake_stripe.pay(purchase.stripe_session_id)
    delete_account(user, django_capture_on_commit_callbacks)

    deliver("charge.dispute.created", fake_stripe.dispute(session["payment_intent"]))
    deliver("checkout.session.completed", session)

    purchase.refresh_from_db()
    assert (purchase.status, purchase.paid_after_account_closed) == ("disputed", True)
    assert "never paid" not in purchase.attention_note
    assert not CreditEntry.objects.filter(purchase=purchase).exists()
    assert_clean(user)
