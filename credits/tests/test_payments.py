"""Buying credits at the wire: the real Stripe SDK against a fake Stripe API
(tests/fakes/stripe.py), and webhook deliveries signed with Stripe's scheme.

Every test checks what it changed against the ledger (`find_ledger_problems`)."""

from __future__ import annotations

import time

import pytest
from django.core import mail
from django.test import Client
from django.utils import formats, translation

from credits import ledger
from credits.models import CreditEntry, CreditPack, Purchase, StripeEvent
from credits.payments.purchases import purchase_mark_reviewed, purchase_reconcile_pending
from credits.payments.refunds import purchase_refund
from credits.reconcile import find_ledger_problems
from credits.selectors import quota_for
from credits.tests.stripe_helpers import assert_clean, deliver, purchased, start_checkout
from tests.tasks import run_tasks

STARTER = ("starter", 50, 499)  # the seeded pack: slug, credits, price in cents


# --- packs and checkout ------------------------------------------------------------


def test_the_packs_endpoint_lists_the_seeded_active_packs_in_order(client, db):
    CreditPack.objects.create(slug="hidden", name="Hidden", credits=5, price=100, active=False)

    body = client.get("/api/credit-packs").json()

    assert [pack["slug"] for pack in body] == ["starter", "creator", "studio"]
    assert body[0] == {"slug": "starter", "name": "Starter", "credits": 50, "price": 499, "currency": "usd"}


def test_checkout_creates_a_pending_purchase_and_a_session_priced_by_the_server(api_client, user, fake_stripe):
    response = api_client.post("/api/checkout", {"pack": "starter", "price": 1}, content_type="application/json")

    assert response.status_code == 201
    body = response.json()
    purchase = Purchase.objects.get(pk=body["purchase_id"])
    assert body["checkout_url"] == purchase.checkout_url == fake_stripe.sessions[purchase.stripe_session_id]["url"]
    assert (purchase.status, purchase.credits, purchase.price, purchase.user) == ("pending", 50, 499, user)
    method, path, params, headers = fake_stripe.requests[-1]
    assert (method, path) == ("POST", "/v1/checkout/sessions")
    assert params["line_items"][0]["price_data"]["unit_amount"] == "499"
    assert params["client_reference_id"] == str(purchase.pk) == params["metadata"]["purchase_id"]
    assert params["payment_intent_data"]["metadata"]["purchase_id"] == str(purchase.pk)
    assert headers["idempotency-key"] == f"stefna-checkout-{purchase.pk}"
    assert purchased(user) == 0, "nothing is granted before the payment"


def test_leaving_stripes_checkout_returns_to_a_buy_page_that_says_nothing_was_charged(api_client, user, fake_stripe):
    start_checkout(api_client)
    cancel_url = fake_stripe.requests[-1][2]["cancel_url"]
    assert cancel_url == "http://testserver/credits/?checkout=canceled"
    api_client.force_login(user)  # the buyer's browser, signed in
    page = api_client.get(cancel_url.removeprefix("http://testserver")).content.decode()
    assert "Checkout canceled: nothing was charged." in page


@pytest.mark.parametrize("pack", ["nope", "hidden"])
def test_an_unknown_or_inactive_pack_is_404_and_creates_nothing(api_client, fake_stripe, pack):
    CreditPack.objects.create(slug="hidden", name="Hidden", credits=5, price=100, active=False)

    response = api_client.post("/api/checkout", {"pack": pack}, content_type="application/json")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert pack in response.json()["message"]
    assert not Purchase.objects.exists() and not fake_stripe.requests


@pytest.mark.parametrize("pack", ["0\x00pack", "pack with spaces", "paquete-ñ"])
def test_a_pack_that_is_no_slug_is_422_and_creates_nothing(api_client, fake_stripe, pack):
    # schemathesis found a NUL here reaching the query: a 500 on PostgreSQL.
    response = api_client.post("/api/checkout", {"pack": pack}, content_type="application/json")

    assert (response.status_code, response.json()["code"]) == (422, "invalid_input")
    assert not Purchase.objects.exists() and not fake_stripe.requests


def test_a_missing_pack_is_422(api_client, fake_stripe):
    response = api_client.post("/api/checkout", {}, content_type="application/json")

    assert (response.status_code, response.json()["code"]) == (422, "invalid_input")


def test_checkout_without_stripe_or_the_offline_checkout_is_503(api_client, settings):
    settings.STRIPE_SECRET_KEY = ""
    settings.OFFLINE_CHECKOUT = False

    response = api_client.post("/api/checkout", {"pack": "starter"}, content_type="application/json")

    assert (response.status_code, response.json()["code"]) == (503, "payments_unavailable")
    assert not Purchase.objects.exists()


def test_stripe_failing_at_checkout_is_502_and_leaves_no_pending_purchase(api_client, fake_stripe):
    fake_stripe.fail_requests(500)

    response = api_client.post("/api/checkout", {"pack": "starter"}, content_type="application/json")

    assert (response.status_code, response.json()["code"]) == (502, "payment_provider_error")
    assert list(Purchase.objects.values_list("status", flat=True)) == ["expired"]


# --- granting exactly once -------------------------------------------------------------


def test_a_paid_checkout_grants_the_pack_once_into_the_purchased_bucket_and_emails_a_receipt(
    paid_purchase, user, fake_stripe
):
    assert paid_purchase.status == "paid" and paid_purchase.paid_at is not None
    assert paid_purchase.receipt_url == fake_stripe.charge_of(paid_purchase.stripe_payment_intent_id)["receipt_url"]
    quota = quota_for(user=user)
    assert (quota.remaining, quota.purchased_balance, quota.current_balance) == (30, 50, 80)
    assert len(mail.outbox) == 1 and paid_purchase.receipt_url in mail.outbox[0].body
    assert mail.outbox[0].to == [user.email]
    assert_clean(user)


def test_the_receipt_says_when_and_links_back_to_the_account_in_the_buyers_language(
    api_client, user, fake_stripe, settings, django_capture_on_commit_callbacks
):
    settings.SITE_URL = "https://stefna.example"
    user.language = "id"
    user.save(update_fields=["language"])
    purchase = start_checkout(api_client)
    with django_capture_on_commit_callbacks(execute=True):
        deliver("checkout.session.completed", fake_stripe.pay(purchase.stripe_session_id))
    run_tasks()  # the receipt the grant queued
    purchase.refresh_from_db()
    (receipt,) = mail.outbox
    with translation.override("id"):
        paid_on = formats.date_format(purchase.paid_at, "DATE_FORMAT")
    assert f"Tanggal: {paid_on}" in receipt.body
    assert "https://stefna.example/accounts/#purchases" in receipt.body
    assert "US$4,99" in receipt.body


def test_the_quota_endpoint_shows_both_buckets(paid_purchase, api_client):
    body = api_client.get("/api/quota").json()

    assert (body["remaining"], body["purchased_balance"], body["currentBalance"]) == (30, 50, 80)


def test_duplicate_and_overlapping_events_grant_once(api_client, user, fake_stripe):
    purchase = start_checkout(api_client)
    session = fake_stripe.pay(purchase.stripe_session_id)

    first = deliver("checkout.session.completed", session, event_id="evt_same")
    again = deliver("checkout.session.completed", session, event_id="evt_same")
    other = deliver("checkout.session.async_payment_succeeded", session)
    retrieved = purchase_reconcile_pending()  # nothing pending is left to reconcile

    assert [r.json()["outcome"] for r in (first, again, other)] == ["granted", "duplicate", "already_done"]
    assert retrieved == {}
    assert CreditEntry.objects.filter(purchase=purchase, reason="purchase").count() == 1
    assert purchased(user) == 50
    assert StripeEvent.objects.count() == 2
    assert_clean(user)


def test_an_unpaid_completion_waits_for_the_async_payment(api_client, user, fake_stripe):
    purchase = start_checkout(api_client)
    session = dict(fake_stripe.sessions[purchase.stripe_session_id], status="complete", payment_status="unpaid")

    assert deliver("checkout.session.completed", session).json()["outcome"] == "not_paid"
    assert purchased(user) == 0
    paid = fake_stripe.pay(purchase.stripe_session_id)
    assert deliver("checkout.session.async_payment_succeeded", paid).json()["outcome"] == "granted"
    assert purchased(user) == 50
    assert_clean(user)


def test_an_expiry_delivered_after_the_payment_changes_nothing(api_client, user, fake_stripe):
    purchase = start_checkout(api_client)
    session = fake_stripe.pay(purchase.stripe_session_id)
    deliver("checkout.session.completed", session)

    late = deliver("checkout.session.expired", dict(session, status="expired"))

    assert late.json()["outcome"] == "already_done"
    purchase.refresh_from_db()
    assert purchase.status == "paid" and purchased(user) == 50
    assert_clean(user)


def test_a_refund_delivered_before_the_completion_reconciles_first_then_takes_back(api_client, user, fake_stripe):
    purchase = start_checkout(api_client)
    session = fake_stripe.pay(purchase.stripe_session_id)
    charge = fake_stripe.refund(session["payment_intent"])

    assert deliver("charge.refunded", charge).json()["outcome"] == "taken_back"
    assert deliver("checkout.session.completed", session).json()["outcome"] == "already_done"

    purchase.refresh_from_db()
    assert (purchase.status, purchase.credits_taken_back, purchased(user)) == ("refunded", 50, 0)
    assert_clean(user)


def test_a_refund_before_the_completion_without_charge_metadata_finds_the_purchase_through_stripe(
    api_client, user, fake_stripe
):
    purchase = start_checkout(api_client)
    session = fake_stripe.pay(purchase.stripe_session_id)
    charge = dict(fake_stripe.refund(session["payment_intent"]), metadata={})

    assert deliver("charge.refunded", charge).json()["outcome"] == "taken_back"

    purchase.refresh_from_db()
    assert (purchase.status, purchase.credits_taken_back, purchased(user)) == ("refunded", 50, 0)
    assert_clean(user)


def test_a_session_expiring_unpaid_marks_the_purchase_expired(api_client, user, fake_stripe):
    purchase = start_checkout(api_client)

    response = deliver("checkout.session.expired", fake_stripe.expire(purchase.stripe_session_id))

    assert response.json()["outcome"] == "expired"
    purchase.refresh_from_db()
    assert purchase.status == "expired" and purchased(user) == 0
    assert_clean(user)


def test_an_unknown_session_is_acknowledged_and_grants_nothing(user, fake_stripe):
    session = {"id": "cs_test_elsewhere", "object": "checkout.session", "status": "complete",
               "payment_status": "paid", "amount_total": 499, "currency": "usd",
               "client_reference_id": "00000000-0000-4000-8000-000000000000", "metadata": {}}  # fmt: skip

    response = deliver("checkout.session.completed", session)

    assert (response.status_code, response.json()["outcome"]) == (200, "unknown_purchase")
    assert not CreditEntry.objects.filter(reason="purchase").exists()


@pytest.mark.parametrize(("amount", "currency"), [(1, "usd"), (499, "eur")])
def test_an_amount_or_currency_mismatch_grants_nothing_and_alerts_staff(
    api_client, user, fake_stripe, amount, currency
):
    purchase = start_checkout(api_client)
    session = fake_stripe.pay(purchase.stripe_session_id, amount=amount, currency=currency)

    assert deliver("checkout.session.completed", session).json()["outcome"] == "amount_mismatch"

    purchase.refresh_from_db()
    assert (purchase.status, purchase.needs_attention, purchased(user)) == ("pending", True, 0)
    assert "Not granted" in purchase.attention_note
    assert_clean(user)


# --- bad deliveries ---------------------------------------------------------------


def test_a_forged_signature_is_400_and_grants_nothing(api_client, user, fake_stripe):
    purchase = start_checkout(api_client)
    session = fake_stripe.pay(purchase.stripe_session_id)

    response = deliver("checkout.session.completed", session, secret="whsec_forged")  # noqa: S106

    assert (response.status_code, response.json()["code"]) == (400, "invalid_webhook")
    assert purchased(user) == 0 and not StripeEvent.objects.exists()


def test_a_replay_past_the_tolerance_is_400(api_client, user, fake_stripe):
    purchase = start_checkout(api_client)
    session = fake_stripe.pay(purchase.stripe_session_id)

    response = deliver("checkout.session.completed", session, timestamp=int(time.time()) - 301)

    assert response.status_code == 400
    assert purchased(user) == 0


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"id": "evt_1", "type": "x", "data": []}'])
def test_a_malformed_webhook_is_400(fake_stripe, user, body):
    response = deliver("", {}, body=body)

    assert (response.status_code, response.json()["code"]) == (400, "invalid_webhook")
    assert not StripeEvent.objects.exists()


def test_a_webhook_without_a_signature_header_is_400(fake_stripe):
    response = Client().post("/api/stripe/webhook", data=b"{}", content_type="application/json")

    assert response.status_code == 400


def test_webhooks_are_refused_when_no_secret_is_configured(settings, db):
    settings.STRIPE_WEBHOOK_SECRET = ""

    response = deliver("checkout.session.completed", {"id": "cs_1"})

    assert (response.status_code, response.json()["code"]) == (400, "invalid_webhook")
    assert "STRIPE_WEBHOOK_SECRET" in response.json()["message"]
    assert not StripeEvent.objects.exists()


# --- never paid but no credits ----------------------------------------------------


def test_a_webhook_that_never_arrives_is_reconciled_by_the_upkeep(api_client, user, fake_stripe, settings):
    settings.PURCHASE_RECONCILE_AFTER_SECONDS = 0
    purchase = start_checkout(api_client)
    fake_stripe.pay(purchase.stripe_session_id)

    assert purchase_reconcile_pending() == {"granted": 1}
    assert purchase_reconcile_pending() == {}

    purchase.refresh_from_db()
    assert purchase.status == "paid" and purchased(user) == 50
    assert_clean(user)


def test_the_upkeep_leaves_recent_and_unpaid_purchases_pending(api_client, user, fake_stripe, settings):
    purchase = start_checkout(api_client)
    assert purchase_reconcile_pending() == {}  # too recent: the webhook is probably on its way
    settings.PURCHASE_RECONCILE_AFTER_SECONDS = 0
    assert purchase_reconcile_pending() == {"not_paid": 1}
    purchase.refresh_from_db()
    assert purchase.status == "pending"


def test_the_upkeep_command_reconciles(api_client, user, fake_stripe, settings):
    from django.core.management import call_command

    settings.PURCHASE_RECONCILE_AFTER_SECONDS = 0
    purchase = start_checkout(api_client)
    fake_stripe.pay(purchase.stripe_session_id)

    call_command("reconcile_purchases")

    assert purchased(user) == 50


def test_the_success_page_reconciles_and_shows_the_new_balance(client, user, fake_stripe):
    client.force_login(user)
    purchase = start_checkout(client)
    pending = client.get(f"/credits/purchases/{purchase.pk}/")
    assert "Payment received, adding your credits…" in pending.content.decode()
    assert 'hx-trigger="every 2s"' in pending.content.decode()
    fake_stripe.pay(purchase.stripe_session_id)
    from django.core.cache import cache

    cache.clear()  # the page asks Stripe at most every few seconds

    status = client.get(f"/credits/purchases/{purchase.pk}/status/", HTTP_HX_REQUEST="true").content.decode()

    assert "50 credits added." in status and "Your balance: 80 credits (30 free today · 50 bought)" in status
    assert "hx-trigger" not in status, "polling stops once paid"
    assert 'hx-swap-oob="true"' in status and "30 free today · 50 bought" in status
    assert_clean(user)


def test_someone_elses_purchase_page_is_404(client, other_user, api_client, fake_stripe):
    purchase = start_checkout(api_client)
    client.force_login(other_user)

    assert client.get(f"/credits/purchases/{purchase.pk}/").status_code == 404


# --- refunds and disputes -----------------------------------------------------------


def test_a_full_refund_after_a_partial_spend_takes_back_only_the_unspent_and_flags_the_rest(
    paid_purchase, user, fake_stripe
):
    # Spend all 30 free credits and 10 bought ones (free credits go first).
    ledger.grant(user=user, amount=-40, reason=CreditEntry.Reason.ADJUST, note="test: spend")
    assert (quota_for(user=user).remaining, purchased(user)) == (0, 40)

    charge = fake_stripe.refund(paid_purchase.stripe_payment_intent_id)
    assert deliver("charge.refunded", charge).json()["outcome"] == "taken_back"
    assert deliver("charge.refunded", charge).json()["outcome"] == "already_done"  # a second event id

    paid_purchase.refresh_from_db()
    assert (paid_purchase.status, paid_purchase.credits_taken_back, paid_purchase.credits_already_spent) == (
        "refunded",
        40,
        10,
    )
    assert paid_purchase.needs_attention and purchased(user) == 0
    assert quota_for(user=user).current_balance == 0, "never below zero"
    assert_clean(user)


def test_a_partial_refund_takes_back_its_share(paid_purchase, user, fake_stripe):
    charge = fake_stripe.refund(paid_purchase.stripe_payment_intent_id, amount=250)

    deliver("charge.refunded", charge)

    paid_purchase.refresh_from_db()
    assert (paid_purchase.status, paid_purchase.amount_refunded, paid_purchase.credits_taken_back) == ("paid", 250, 26)
    assert purchased(user) == 24 and not paid_purchase.needs_attention
    rest = fake_stripe.refund(paid_purchase.stripe_payment_intent_id)
    deliver("charge.refunded", rest)
    paid_purchase.refresh_from_db()
    assert (paid_purchase.status, paid_purchase.credits_taken_back, purchased(user)) == ("refunded", 50, 0)
    assert_clean(user)


def test_a_dispute_takes_back_the_unspent_credits_and_alerts_staff(paid_purchase, user, fake_stripe):
    dispute = {"id": "dp_1", "object": "dispute", "amount": 499, "currency": "usd",
               "payment_intent": paid_purchase.stripe_payment_intent_id, "reason": "fraudulent"}  # fmt: skip

    assert deliver("charge.dispute.created", dispute).json()["outcome"] == "taken_back"

    paid_purchase.refresh_from_db()
    assert (paid_purchase.status, paid_purchase.credits_taken_back, paid_purchase.needs_attention) == (
        "disputed",
        50,
        True,
    )
    assert purchased(user) == 0 and quota_for(user=user).remaining == 30, "the free allowance is not touched"
    assert_clean(user)


def test_the_admin_refund_asks_stripe_and_the_event_takes_the_credits_back(paid_purchase, user, fake_stripe):
    refund_id = purchase_refund(purchase=paid_purchase)

    assert fake_stripe.refunds[-1]["id"] == refund_id
    assert purchased(user) == 50, "credits follow Stripe's event, not the button"
    deliver("charge.refunded", fake_stripe.charge_of(paid_purchase.stripe_payment_intent_id))
    assert purchased(user) == 0
    assert_clean(user)


# --- records --------------------------------------------------------------------------


def test_purchases_are_listed_newest_first_with_cursors(paid_purchase, api_client, fake_stripe):
    second = start_checkout(api_client, "creator")

    first_page = api_client.get("/api/purchases?limit=1").json()
    second_page = api_client.get(f"/api/purchases?limit=1&cursor={first_page['next_cursor']}").json()

    assert [item["id"] for item in first_page["items"]] == [str(second.pk)]
    assert first_page["items"][0]["status"] == "pending" and first_page["items"][0]["receipt_url"] is None
    item = second_page["items"][0]
    assert set(item) == {"id", "pack", "credits", "price", "currency", "status", "created_at", "paid_at", "receipt_url"}
    assert (item["pack"], item["credits"], item["price"], item["status"]) == ("starter", 50, 499, "paid")
    assert item["receipt_url"] == paid_purchase.receipt_url and second_page["next_cursor"] is None


def test_purchases_are_private(paid_purchase, other_user):
    stranger = Client()
    stranger.force_login(other_user)

    assert stranger.get("/api/purchases").json()["items"] == []


def test_the_admin_lists_and_searches_purchases_and_shows_the_alert(paid_purchase, staff_client):
    Purchase.objects.filter(pk=paid_purchase.pk).update(needs_attention=True)

    page = staff_client.get(f"/admin/credits/purchase/?q={paid_purchase.stripe_payment_intent_id}")

    assert page.status_code == 200
    assert paid_purchase.email in page.content.decode() and "1 purchase needs attention" in page.content.decode()
    assert (
        staff_client.get("/admin/credits/purchase/?q=nobody@example.com").content.decode().count(paid_purchase.email)
        == 0
    )


def test_the_worker_upkeep_enqueues_the_reconciliation_task_which_grants(api_client, user, fake_stripe, settings):
    from django_tasks_db.models import DBTaskResult

    from credits.tasks import purchase_upkeep_due, reconcile_purchases_task

    settings.PURCHASE_RECONCILE_AFTER_SECONDS = 0
    purchase = start_checkout(api_client)
    fake_stripe.pay(purchase.stripe_session_id)

    purchase_upkeep_due()
    purchase_upkeep_due()  # within the minute: not enqueued again
    assert DBTaskResult.objects.filter(task_path__endswith="reconcile_purchases_task").count() == 1
    reconcile_purchases_task.call()

    assert purchased(user) == 50


def test_a_failed_async_payment_expires_the_purchase(api_client, user, fake_stripe):
    purchase = start_checkout(api_client)
    session = dict(fake_stripe.sessions[purchase.stripe_session_id], status="complete", payment_status="unpaid")

    assert deliver("checkout.session.async_payment_failed", session).json()["outcome"] == "expired"

    purchase.refresh_from_db()
    assert purchase.status == "expired" and purchased(user) == 0


def test_the_admin_refund_action_calls_stripe(paid_purchase, staff_client, fake_stripe):
    response = staff_client.post(
        "/admin/credits/purchase/",
        {"action": "refund", "_selected_action": [str(paid_purchase.pk)], "apply": "1"},  # past the confirmation
        follow=True,
    )

    assert response.status_code == 200 and "Refund requested for 1 purchase" in response.content.decode()
    assert [refund["payment_intent"] for refund in fake_stripe.refunds] == [paid_purchase.stripe_payment_intent_id]
    assert fake_stripe.requests[-1][3]["idempotency-key"] == f"stefna-refund-{paid_purchase.pk}"


def test_check_ledger_reports_a_paid_purchase_without_its_credits_and_a_drifted_bucket(paid_purchase, user):
    Purchase.objects.filter(pk=paid_purchase.pk).update(credits_taken_back=5)
    from credits.models import Wallet

    Wallet.objects.filter(pk=user.pk).update(purchased_balance=10)

    problems = find_ledger_problems(users=[user])

    assert any("entries took back 0, recorded 5" in problem for problem in problems)
    assert any("purchased balance 10 but purchased parts sum to 50" in problem for problem in problems)


def test_abandoned_checkouts_do_not_crowd_out_a_paid_one(api_client, user, fake_stripe, settings):
    settings.PURCHASE_RECONCILE_AFTER_SECONDS = 0
    abandoned = [start_checkout(api_client) for _ in range(3)]
    paid = start_checkout(api_client)
    fake_stripe.pay(paid.stripe_session_id)

    assert purchase_reconcile_pending(limit=2) == {"not_paid": 2}
    assert purchase_reconcile_pending(limit=2) == {"not_paid": 1, "granted": 1}

    assert purchased(user) == 50
    assert Purchase.objects.filter(pk__in=[p.pk for p in abandoned], status="pending").count() == 3


@pytest.mark.usefixtures("clear_of_rate_window_end")
def test_starting_checkouts_is_rate_limited_per_user(api_client, user, fake_stripe, settings):
    settings.RATE_LIMIT_CHECKOUTS = (2, 3600)
    start_checkout(api_client)
    start_checkout(api_client)

    response = api_client.post("/api/checkout", {"pack": "starter"}, content_type="application/json")

    assert (response.status_code, response.json()["code"]) == (429, "rate_limited")
    assert Purchase.objects.count() == 2 and len(fake_stripe.sessions) == 2


def test_a_mismatched_payment_is_flagged_once_and_does_not_crowd_out_a_paid_one(
    api_client, user, fake_stripe, settings
):
    settings.PURCHASE_RECONCILE_AFTER_SECONDS = 0
    mismatched = start_checkout(api_client)
    fake_stripe.pay(mismatched.stripe_session_id, amount=1)
    assert purchase_reconcile_pending(limit=1) == {"amount_mismatch": 1}
    mismatched.refresh_from_db()
    purchase_mark_reviewed(purchase=mismatched)  # staff looked, refunded it in Stripe's dashboard
    paid = start_checkout(api_client)
    fake_stripe.pay(paid.stripe_session_id)

    assert purchase_reconcile_pending(limit=1) == {"amount_mismatch": 1}
    assert purchase_reconcile_pending(limit=1) == {"granted": 1}

    mismatched.refresh_from_db()
    assert not mismatched.needs_attention, "reviewed stays reviewed"
    assert mismatched.attention_note.count("Not granted") == 1
    assert purchased(user) == 50
    assert_clean(user)
