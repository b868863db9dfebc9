"""Prices and stored names in the active language (Django formats dates and numbers, but
not money, and has no translated model fields).

Kept free of app imports: models (credits' `format_price`, the packs' and presets' names)
and template filters use it.
"""

from __future__ import annotations

from decimal import Decimal

from django.utils import translation
from django.utils.formats import number_format

# Symbols as each language's readers expect them; an unknown currency shows its code.
CURRENCY_SYMBOLS = {
    "en": {"usd": "$", "eur": "€", "gbp": "£", "idr": "Rp"},
    "id": {"usd": "US$", "eur": "€", "gbp": "£", "idr": "Rp"},
}
# Stripe's zero-decimal currencies: their prices have no minor unit.
ZERO_DECIMAL_CURRENCIES = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
# Stripe's three-decimal currencies: their minor unit is a thousandth (1250 "kwd" is
# KWD 1.250). Read as cents, a price would show ten times what Stripe charges.
THREE_DECIMAL_CURRENCIES = frozenset("bhd jod kwd omr tnd".split())


def active_language() -> str:
    """The active language's base code ("en", "id"), English outside any activation."""
    return (translation.get_language() or "en").split("-")[0]


def format_money(minor_units: int, currency: str) -> str:
    """A price in the active language: 499 "usd" → "$4.99" (English), "US$4,99" (Indonesian)."""
    currency = (currency or "usd").lower()
    decimals = 0 if currency in ZERO_DECIMAL_CURRENCIES else 3 if currency in THREE_DECIMAL_CURRENCIES else 2
    amount = Decimal(int(minor_units)).scaleb(-decimals)
    # Whole rupiah prices read without ",00"; cents always show for dollars and euros.
    if currency == "idr" and amount == amount.to_integral_value():
        decimals = 0
    language = active_language()
    symbol = CURRENCY_SYMBOLS.get(language, CURRENCY_SYMBOLS["en"]).get(currency, currency.upper() + " ")
    number = number_format(amount, decimal_pos=decimals, use_l10n=True, force_grouping=True)
    return f"{symbol}{number}"


def grouped(value: int | None) -> str:
    """A count with the language's thousands separator: 1500 → "1,500", "1.500" in Indonesian.

    Django groups digits only with USE_THOUSAND_SEPARATOR, which would group every number a
    template prints, ids and limits in attributes and URLs included; balances and credit
    counts ask for it here instead (the `grouped` template filter, and admin messages).
    """
    return "" if value is None else number_format(value, use_l10n=True, force_grouping=True)


def in_active_language(obj: object, field: str) -> str:
    """`obj.<field>` in the active language: its `<field>_<language>` column (`name_id`, …)
    when filled, else the English one. One column per shipped language besides English;
    a new language adds its own. English is both the default and the fallback for empty text."""
    language = active_language()
    if language != "en":
        localized = getattr(obj, f"{field}_{language}", "")
        if localized:
            return str(localized)
    return str(getattr(obj, field))
