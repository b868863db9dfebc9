"""What a pack's price reads as on the page is what Stripe is asked to charge.

Prices are stored in the currency's minor unit, as Stripe takes them: cents for most
currencies, none for zero-decimal ones (JPY), thousandths for Stripe's three-decimal
ones (BHD, JOD, KWD, OMR, TND)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import translation

from credits.models import CreditPack, Purchase, format_price
from credits.tests.stripe_helpers import start_checkout


@pytest.mark.parametrize(
    ("currency", "price", "shown"),
    [("usd", 499, "$4.99"), ("jpy", 500, "JPY 500"), ("kwd", 1250, "KWD 1.250"), ("bhd", 2000, "BHD 2.000")],
)
def test_the_buy_page_shows_the_amount_stripe_is_asked_to_charge(
    client, api_client, user, fake_stripe, currency, price, shown
):
    CreditPack.objects.create(slug="local", name="Local", credits=40, price=price, currency=currency, sort_order=0)
    client.force_login(user)

    page = client.get(reverse("credits:buy"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    start_checkout(api_client, "local")

    assert shown in page
    price_data = fake_stripe.requests[-1][2]["line_items"][0]["price_data"]
    assert (price_data["unit_amount"], price_data["currency"]) == (str(price), currency)


def test_three_decimal_currencies_read_in_each_language():
    with translation.override("id"):
        assert format_price(1250, "kwd") == "KWD 1,250"
        assert format_price(1250, "omr") == "OMR 1,250"


# --- Stripe's three-decimal currencies are charged in steps of 10 ------------------------

PACK_ADD = "/admin/credits/creditpack/add/"


def pack_form(**changes):  # type: ignore[no-untyped-def]
    form = {"name": "Gulf", "slug": "gulf", "credits": 40, "price": 1255, "currency": "kwd", "sort_order": 0}
    form.update(active="on", **changes)
    return form


@pytest.mark.parametrize("currency", ["kwd", "bhd", "jod", "omr", "tnd"])
def test_the_admin_refuses_a_three_decimal_price_stripe_would_refuse(staff_client, currency):
    response = staff_client.post(PACK_ADD, pack_form(currency=currency), HTTP_ACCEPT_LANGUAGE="en")

    assert response.status_code == 200, "the form comes back with the error"
    assert (
        f"Stripe charges {currency.upper()} in steps of 10, so the price&#x27;s last digit must be 0 "
        "(for example 1260)." in response.content.decode()
    )
    assert not CreditPack.objects.filter(slug="gulf").exists()


def test_the_admin_saves_a_three_decimal_price_ending_in_zero_and_any_two_decimal_one(staff_client):
    assert staff_client.post(PACK_ADD, pack_form(price=1250)).status_code == 302
    assert staff_client.post(PACK_ADD, pack_form(slug="dollars", currency="usd", price=1255)).status_code == 302
    assert set(CreditPack.objects.filter(slug__in=["gulf", "dollars"]).values_list("price", flat=True)) == {
        1250,
        1255,
    }


def test_the_refusal_reads_in_indonesian(staff_client):
    response = staff_client.post(PACK_ADD, pack_form(price=5), HTTP_ACCEPT_LANGUAGE="id")

    assert "Stripe menagih KWD dalam kelipatan 10" in response.content.decode()


def test_a_mispriced_pack_already_in_the_database_is_not_sold_and_checkout_refuses_it(
    api_client, user, fake_stripe, staff_client
):
    CreditPack.objects.create(slug="gulf", name="Gulf", credits=40, price=1255, currency="kwd", sort_order=0)
    client = Client()
    client.force_login(user)

    answer = api_client.post("/api/checkout", {"pack": "gulf"}, content_type="application/json")

    assert answer.status_code == 404 and answer.json()["code"] == "not_found"
    assert not Purchase.objects.exists() and fake_stripe.requests == [], "no purchase, no Stripe session, no charge"
    assert "gulf" not in [pack["slug"] for pack in client.get("/api/credit-packs").json()]
    assert 'data-testid="buy-gulf"' not in client.get(reverse("credits:buy")).content.decode()
    warning = staff_client.get("/admin/credits/creditpack/").content.decode()
    assert "Gulf (gulf) is not for sale" in warning


# --- Stripe's minimum and maximum charge per currency -----------------------------------


@pytest.mark.parametrize(
    ("currency", "too_low", "lowest", "minimum_shown"),
    [("usd", 49, 50, "$0.50"), ("gbp", 29, 30, "£0.30"), ("jpy", 49, 50, "JPY 50"), ("mxn", 999, 1000, "MXN 10.00")],
)
def test_the_admin_refuses_a_price_below_stripes_minimum_charge(staff_client, currency, too_low, lowest, minimum_shown):
    refused = staff_client.post(PACK_ADD, pack_form(currency=currency, price=too_low), HTTP_ACCEPT_LANGUAGE="en")

    assert refused.status_code == 200, "the form comes back with the error"
    assert (
        f"Stripe charges at least {minimum_shown} in {currency.upper()}, so the price must be {lowest} or more"
        in refused.content.decode()
    )
    assert not CreditPack.objects.filter(slug="gulf").exists()
    assert staff_client.post(PACK_ADD, pack_form(currency=currency, price=lowest)).status_code == 302
    assert CreditPack.objects.get(slug="gulf").price == lowest


def test_the_admin_refuses_a_price_over_eight_digits(staff_client):
    refused = staff_client.post(PACK_ADD, pack_form(currency="usd", price=100_000_000), HTTP_ACCEPT_LANGUAGE="en")

    assert "Stripe charges at most 8 digits in the currency&#x27;s minor unit" in refused.content.decode()
    assert not CreditPack.objects.filter(slug="gulf").exists()
    assert staff_client.post(PACK_ADD, pack_form(currency="usd", price=99_999_999)).status_code == 302


def test_a_currency_outside_stripes_table_has_no_minimum_but_the_maximum(staff_client):
    """IDR is not in Stripe's table (its minimum is "the equivalent of $0.50"): any price of
    at least one minor unit is taken, up to the 8-digit maximum."""
    assert staff_client.post(PACK_ADD, pack_form(currency="idr", price=1)).status_code == 302
    refused = staff_client.post(PACK_ADD, pack_form(slug="rupiah", currency="idr", price=100_000_000))
    assert refused.status_code == 200 and not CreditPack.objects.filter(slug="rupiah").exists()


def test_the_minimum_refusal_reads_in_indonesian(staff_client):
    response = staff_client.post(PACK_ADD, pack_form(currency="usd", price=10), HTTP_ACCEPT_LANGUAGE="id")

    assert "Stripe menagih paling sedikit" in response.content.decode()


@pytest.mark.parametrize(("currency", "price"), [("usd", 49), ("eur", 10), ("usd", 100_000_000)])
def test_a_saved_pack_outside_stripes_limits_is_not_sold_and_checkout_refuses_it(
    api_client, user, fake_stripe, staff_client, currency, price
):
    # Saved before the rule (a row written directly, as the migration left it).
    CreditPack.objects.create(slug="cheap", name="Cheap", credits=4, price=price, currency=currency, sort_order=0)
    client = Client()
    client.force_login(user)

    answer = api_client.post("/api/checkout", {"pack": "cheap"}, content_type="application/json")

    assert answer.status_code == 404 and answer.json()["code"] == "not_found"
    assert not Purchase.objects.exists() and fake_stripe.requests == [], "no purchase, no Stripe session, no charge"
    assert "cheap" not in [pack["slug"] for pack in client.get("/api/credit-packs").json()]
    assert 'data-testid="buy-cheap"' not in client.get(reverse("credits:buy")).content.decode()
    page = client.post(reverse("credits:checkout"), {"pack": "cheap"}, follow=True)
    assert page.redirect_chain[-1][0] == reverse("credits:buy") and not Purchase.objects.exists()
    warning = staff_client.get("/admin/credits/creditpack/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Cheap (cheap) is not for sale: Stripe charges" in warning
