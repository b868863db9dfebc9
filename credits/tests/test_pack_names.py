"""A credit pack's name in the reader's language: `name_id` in Bahasa Indonesia, the
English `name` when it is blank, wherever a buyer sees it (the API, the pages, Stripe's
Checkout line item, the receipt email, the account's statement)."""

from __future__ import annotations

from django.core import mail
from django.test import Client

from credits.models import CreditPack
from credits.tests.stripe_helpers import deliver, start_checkout
from tests.tasks import run_tasks


def names(client, language):  # type: ignore[no-untyped-def]
    answer = client.get("/api/credit-packs", HTTP_ACCEPT_LANGUAGE=language).json()
    return {pack["slug"]: pack["name"] for pack in answer}


def signed_in(user, language):  # type: ignore[no-untyped-def]
    user.language = language
    user.save(update_fields=["language"])
    client = Client()
    client.force_login(user)
    return client


def test_the_packs_endpoint_names_each_pack_in_the_requests_language(client, db):
    CreditPack.objects.create(slug="plain", name="Plain", credits=10, price=100, sort_order=99)

    assert names(client, "en") == {"starter": "Starter", "creator": "Creator", "studio": "Pro", "plain": "Plain"}
    # The seeded packs were named in Indonesian by the migration; a blank name reads in English.
    assert names(client, "id") == {"starter": "Pemula", "creator": "Kreator", "studio": "Pro", "plain": "Plain"}


def test_the_buy_page_names_packs_in_the_readers_language(user, fake_stripe):
    CreditPack.objects.filter(slug="starter").update(name_id="Paket Awal")

    page = signed_in(user, "id").get("/credits/").content.decode()

    assert "<h2>Paket Awal</h2>" in page and "Beli Paket Awal" in page
    assert "<h2>Starter</h2>" not in page


def test_stripes_checkout_line_item_names_the_pack_in_the_buyers_language(api_client, fake_stripe):
    api_client.defaults["HTTP_ACCEPT_LANGUAGE"] = "id"
    start_checkout(api_client)

    product = fake_stripe.requests[-1][2]["line_items"][0]["price_data"]["product_data"]
    assert product["name"] == "Stefna: 50 kredit (Pemula)"


def test_stripes_checkout_page_opens_in_the_buyers_language(api_client, fake_stripe):
    # Stripe's page follows `locale`, else the browser's language, which may not be the one
    # the buyer chose here.
    api_client.defaults["HTTP_ACCEPT_LANGUAGE"] = "id"
    start_checkout(api_client)
    assert fake_stripe.requests[-1][2]["locale"] == "id"

    api_client.defaults["HTTP_ACCEPT_LANGUAGE"] = "en"
    start_checkout(api_client)
    assert fake_stripe.requests[-1][2]["locale"] == "en"


def test_the_receipt_and_the_account_page_name_the_pack_in_the_buyers_language(
    api_client, user, fake_stripe, django_capture_on_commit_callbacks
):
    purchase = start_checkout(api_client)
    user.language = "id"
    user.save(update_fields=["language"])
    with django_capture_on_commit_callbacks(execute=True):
        deliver("checkout.session.completed", fake_stripe.pay(purchase.stripe_session_id))
    run_tasks()  # the receipt the grant queued

    assert "(Pemula)" in mail.outbox[-1].body
    page = signed_in(user, "id").get("/accounts/").content.decode()
    assert "Pemula · 50" in page, "the purchases table"
    assert "· Pemula</span>" in page, "the statement's row for the bought credits"
    english = signed_in(user, "en").get("/accounts/").content.decode()
    assert "Starter · 50" in english and "· Starter</span>" in english


def test_staff_name_a_pack_in_indonesian_in_the_admin(staff_client):
    form = {"name": "Gulf", "slug": "gulf", "credits": 40, "price": 1250, "currency": "kwd", "sort_order": 0}

    assert staff_client.post("/admin/credits/creditpack/add/", {**form, "name_id": "Teluk"}).status_code == 302
    assert CreditPack.objects.get(slug="gulf").name_id == "Teluk"


def test_counts_in_the_pack_lines_are_grouped_in_the_readers_language(user, fake_stripe):
    """Plural messages printed their count bare ("1500 kredit") beside grouped balances
    ("1.500"): a count inside a plural message now goes through the same grouping."""
    CreditPack.objects.filter(slug="starter").update(credits=1500)

    indonesian = signed_in(user, "id").get("/credits/").content.decode()
    english = signed_in(user, "en").get("/credits/").content.decode()

    assert "1.500 kredit" in indonesian and "Cukup untuk 750 kreasi" in indonesian
    assert "1500 kredit" not in indonesian
    assert "1,500 credits" in english and "Enough for 750 generations" in english
