"""What a pack's price reads as on the page is what Stripe is asked to charge.

Prices are stored in the currency's minor unit, as Stripe takes them: cents for most
currencies, none for zero-decimal ones (JPY), thousandths for Stripe's three-decimal
ones (BHD, JOD, KWD, OMR, TND)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import translation

from credits.models import CreditPack, format_price
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
