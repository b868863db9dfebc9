"""Purchases in the admin: refunds ask first, and a purchase leads to its money records."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.urls import reverse

from credits import ledger
from credits.models import CreditEntry, Purchase, Wallet
from generation.tests.factories import GenerationFactory
from stefna.accounts.tests.factories import UserFactory

PURCHASES = reverse("admin:credits_purchase_changelist")
ENTRIES = reverse("admin:credits_creditentry_changelist")


def refund_action(client, purchase: Purchase, **extra):  # type: ignore[no-untyped-def]
    return client.post(
        PURCHASES, {"action": "refund", "index": "0", "_selected_action": [str(purchase.pk)], **extra}, follow=True
    )


def test_refunding_a_purchase_asks_first_and_names_the_sum(staff_client, paid_purchase, fake_stripe):
    asked = refund_action(staff_client, paid_purchase)
    page = asked.content.decode()
    assert asked.status_code == 200 and "Refund purchases" in page
    assert "$4.99 to refund" in page and "cannot be recalled" in page
    assert fake_stripe.refunds == [], "choosing the action alone refunds nothing"

    done = refund_action(staff_client, paid_purchase, apply="1")
    assert [str(message) for message in done.context["messages"]] == ["Refund requested for 1 purchase."]
    assert [refund["payment_intent"] for refund in fake_stripe.refunds] == [paid_purchase.stripe_payment_intent_id]


def test_refunding_a_test_checkout_purchase_says_no_money_moves(staff_client, paid_purchase, fake_stripe):
    Purchase.objects.filter(pk=paid_purchase.pk).update(provider=Purchase.Provider.OFFLINE)

    page = refund_action(staff_client, paid_purchase).content.decode()

    assert "Test-checkout purchases moved no money" in page
    assert "through Stripe" not in page and "cannot be recalled" not in page


def test_the_refund_is_offered_on_the_purchase_page_too(staff_client, paid_purchase, fake_stripe):
    url = reverse("admin:credits_purchase_change", args=[paid_purchase.pk])
    assert b'value="refund"' in staff_client.get(url).content
    selection = {"CHANGE_FORM-action": "refund", "_selected_action": [str(paid_purchase.pk)]}
    asked = staff_client.post(url, selection)
    assert b"Yes, refund" in asked.content and fake_stripe.refunds == []
    staff_client.post(url, {**selection, "apply": "1"})
    assert len(fake_stripe.refunds) == 1


def test_a_purchase_shows_its_money_in_its_currency_and_its_ledger_entries(staff_client, paid_purchase):
    page = staff_client.get(reverse("admin:credits_purchase_change", args=[paid_purchase.pk])).content.decode()
    assert "$4.99" in page and "$0.00" in page  # the price and the amount refunded, not 499 and 0
    assert "credit entries of this purchase" in page.lower() and "Credits bought" in page
    records = f"?user__id__exact={paid_purchase.user_id}"
    for url in (
        reverse("admin:generation_generation_changelist"),
        reverse("admin:credits_purchase_changelist"),
        reverse("admin:credits_creditentry_changelist"),
    ):
        assert f'href="{url}{records}"' in page
        assert staff_client.get(url + records).status_code == 200


def test_the_ledger_finds_a_purchases_entries_by_its_stripe_ids_and_links_back(staff_client, paid_purchase):
    for term in (paid_purchase.stripe_payment_intent_id, paid_purchase.stripe_session_id, str(paid_purchase.pk)):
        response = staff_client.get(ENTRIES, {"q": term})
        entries = list(response.context["cl"].result_list)
        assert [entry.reason for entry in entries] == ["purchase"], term
        assert reverse("admin:credits_purchase_change", args=[paid_purchase.pk]) in response.content.decode()
    assert list(staff_client.get(ENTRIES, {"q": "pi_unknown"}).context["cl"].result_list) == []


def test_the_user_page_shows_the_balance_and_leads_to_their_records(staff_client, paid_purchase, user):
    other = UserFactory(email="bob@example.com")
    mine = GenerationFactory(user=user)
    GenerationFactory(user=other)
    page = staff_client.get(reverse("admin:accounts_user_change", args=[user.pk])).content.decode()
    assert "80 credits: 50 bought or granted, 30 free today" in page
    generations = f"{reverse('admin:generation_generation_changelist')}?user__id__exact={user.pk}"
    assert f'href="{generations}"' in page
    assert list(staff_client.get(generations).context["cl"].result_list) == [mine]


def test_a_purchase_shows_stripes_events_and_they_are_found_by_its_payment_intent(staff_client, paid_purchase):
    page = staff_client.get(reverse("admin:credits_purchase_change", args=[paid_purchase.pk])).content.decode()
    assert "stripe events of this purchase" in page.lower() and "checkout.session.completed" in page
    events = staff_client.get(
        reverse("admin:credits_stripeevent_changelist"), {"q": paid_purchase.stripe_payment_intent_id}
    )
    assert [event.type for event in events.context["cl"].result_list] == ["checkout.session.completed"]


def test_the_refund_confirmation_says_when_the_bought_credits_are_already_spent(staff_client, paid_purchase, user):
    from credits import ledger

    ledger.grant(user=user, amount=-60, note="spent on generations", reason="adjust")  # 30 free + 30 of the 50 bought
    page = refund_action(staff_client, paid_purchase).content.decode()
    assert "the buyer holds only 20 bought credits, so 30 are already spent" in page


def test_the_user_page_counts_todays_allowance_before_the_owner_comes_back(staff_client, user):
    # The owner spent all of yesterday's free credits and has not been back since UTC
    # midnight: the stored row still reads 0 free. The page must not write, so it shows
    # what the owner's next visit will find, and says so.
    wallet = Wallet.objects.create(
        user=user, balance=5, purchased_balance=5, allowance_day=ledger.utc_today() - dt.timedelta(days=1)
    )
    page = staff_client.get(reverse("admin:accounts_user_change", args=[user.pk])).content.decode()
    free = settings.DAILY_CREDITS
    assert f"{5 + free} credits: 5 bought or granted, {free} free today" in page
    assert "applied at their next visit" in page
    wallet.refresh_from_db()
    assert (wallet.balance, wallet.allowance_day) == (5, ledger.utc_today() - dt.timedelta(days=1))
    assert not CreditEntry.objects.filter(user=user).exists()


def test_the_refund_confirmation_reads_every_buyers_wallet_in_one_query(
    staff_client, fake_stripe, django_capture_on_commit_callbacks, django_assert_max_num_queries
):
    """What each buyer still holds was read one wallet a line; now all at once, and each
    line still has its own buyer's figures."""
    from django.test import Client

    from credits.tests.stripe_helpers import deliver, start_checkout

    purchases = []
    for number, spent in enumerate((0, 60, 70)):
        buyer = UserFactory(email=f"buyer{number}@example.com")
        client = Client()
        client.force_login(buyer)
        purchase = start_checkout(client)
        with django_capture_on_commit_callbacks(execute=True):
            assert deliver("checkout.session.completed", fake_stripe.pay(purchase.stripe_session_id)).status_code == 200
        if spent:  # the free credits go first, then the 50 bought
            ledger.grant(user=buyer, amount=-spent, note="spent on generations", reason="adjust")
        purchases.append(purchase)

    def confirm(selected):  # type: ignore[no-untyped-def]
        return staff_client.post(
            PURCHASES, {"action": "refund", "index": "0", "_selected_action": [str(p.pk) for p in selected]}
        )

    confirm(purchases[:1])  # warms what a first request loads once (sessions, content types)
    with django_assert_max_num_queries(12) as one:
        confirm(purchases[:1])
    with django_assert_max_num_queries(len(one.captured_queries)) as three:
        page = confirm(purchases).content.decode()
    assert len(three.captured_queries) == len(one.captured_queries)
    assert "buyer0@example.com" in page and "buyer0@example.com: Starter, 50 credits, $4.99 to refund" in page
    assert "the buyer holds only 20 bought credits, so 30 are already spent" in page  # buyer1
    assert "the buyer holds only 10 bought credits, so 40 are already spent" in page  # buyer2
    assert page.count("already spent") == 2  # buyer0 holds all 50
