"""What Stripe will charge: a price (in the currency's minor unit) Stripe would refuse
makes the checkout fail at Stripe, so such a pack is refused in the admin and never
offered. `price_problem` is the one helper for every rule; the pack admin form
(`CreditPack.clean_fields`), the packs for sale and checkout all ask it.
"""

from __future__ import annotations

import enum

from django.utils.translation import gettext as _

from stefna.i18n_formats import THREE_DECIMAL_CURRENCIES, format_money


class PriceProblem(enum.StrEnum):
    BELOW_MINIMUM = "below_stripe_minimum"
    ABOVE_MAXIMUM = "above_stripe_maximum"
    THREE_DECIMAL_STEP = "three_decimal_price"


# Stripe's minimum charge amount per currency, in the minor unit, from its table
# https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts. Stripe's page itself
# could not be reached from where this was written; on 7 Dec 2026 the table below agreed,
# currency by currency, with three independent public copies of it in other projects.
# Stripe's rule behind the table is "$0.50 US or the equivalent", applied to the
# settlement currency at the day's rate, so a price just above these can still be refused
# when it settles in another currency; the table is what Stripe documents per currency.
STRIPE_MINIMUM_CHARGE: dict[str, int] = {
    "usd": 50,
    "aed": 200,
    "aud": 50,
    "bgn": 100,
    "brl": 50,
    "cad": 50,
    "chf": 50,
    "czk": 1500,
    "dkk": 250,
    "eur": 50,
    "gbp": 30,
    "hkd": 400,
    "huf": 17500,
    "inr": 50,
    "jpy": 50,
    "mxn": 1000,
    "myr": 200,
    "nok": 300,
    "nzd": 50,
    "pln": 200,
    "ron": 200,
    "sek": 300,
    "sgd": 50,
    "thb": 1000,
}
# A currency not in the table (IDR, the three-decimal ones, …) gets no minimum beyond one
# minor unit: Stripe's minimum there is "the equivalent of $0.50", which moves with the
# exchange rate, and refusing every currency outside the table would refuse prices Stripe
# takes. Staff pricing in such a currency checks Stripe's table themselves.
DEFAULT_MINIMUM_CHARGE = 1
# Same page: "The amount value supports up to eight digits" in every currency.
STRIPE_MAXIMUM_CHARGE = 99_999_999


def minimum_charge(currency: str) -> int:
    return STRIPE_MINIMUM_CHARGE.get(currency.lower(), DEFAULT_MINIMUM_CHARGE)


def price_problem(price: int, currency: str) -> PriceProblem | None:
    """Why Stripe would refuse to charge `price` (minor unit) in `currency`, or None."""
    currency = currency.lower()
    if price < minimum_charge(currency):
        return PriceProblem.BELOW_MINIMUM
    if price > STRIPE_MAXIMUM_CHARGE:
        return PriceProblem.ABOVE_MAXIMUM
    # Stripe's three-decimal currencies (KWD, BHD, JOD, OMR, TND) are charged in steps of
    # 10 thousandths, so such a price must end in 0.
    if currency in THREE_DECIMAL_CURRENCIES and price % 10:
        return PriceProblem.THREE_DECIMAL_STEP
    return None


def price_chargeable(price: int, currency: str) -> bool:
    return price_problem(price, currency) is None


def price_problem_message(problem: PriceProblem, price: int, currency: str) -> str:
    """The refusal in the active language, for the pack form and the admin's warning."""
    code = currency.upper()
    if problem == PriceProblem.BELOW_MINIMUM:
        minimum = minimum_charge(currency)
        return _(
            "Stripe charges at least %(minimum)s in %(currency)s, so the price must be %(minimum_units)s or more "
            "(in the currency's minor unit)."
        ) % {"minimum": format_money(minimum, currency.lower()), "currency": code, "minimum_units": minimum}
    if problem == PriceProblem.ABOVE_MAXIMUM:
        return _(
            "Stripe charges at most 8 digits in the currency's minor unit, so the price must be %(maximum)s or less."
        ) % {"maximum": STRIPE_MAXIMUM_CHARGE}
    return _(
        "Stripe charges %(currency)s in steps of 10, so the price's last digit must be 0 (for example %(suggestion)s)."
    ) % {"currency": code, "suggestion": max(10, round(price, -1))}
