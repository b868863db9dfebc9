"""Template filters that format for the active language: `{% load stefna_i18n %}`.

Dates and plain numbers use Django's own localisation (`date:"DATE_FORMAT"`,
`intcomma`, `localize`); prices need a currency, which Django does not format.
"""

from __future__ import annotations

from decimal import Decimal

from django import template
from django.utils import translation
from django.utils.formats import number_format

register = template.Library()

# Symbols as each language's readers expect them; an unknown currency shows its code.
CURRENCY_SYMBOLS = {
    "en": {"usd": "$", "eur": "€", "gbp": "£", "idr": "Rp"},
    "id": {"usd": "US$", "eur": "€", "gbp": "£", "idr": "Rp"},
}
# Currencies whose minor unit is not a hundredth (ISO 4217 zero-decimal ones we may sell in).
ZERO_DECIMAL = {"jpy", "krw", "vnd"}


@register.filter
def money(minor_units: int | None, currency: str = "usd") -> str:
    """`499|money:"usd"` → "$4.99" in English, "US$4,99" in Bahasa Indonesia."""
    if minor_units is None:
        return ""
    currency = (currency or "usd").lower()
    decimals = 0 if currency in ZERO_DECIMAL else 2
    amount = Decimal(int(minor_units)).scaleb(-decimals)
    # Whole rupiah prices read without ",00"; cents always show for dollars and euros.
    if currency == "idr" and amount == amount.to_integral_value():
        decimals = 0
    language = (translation.get_language() or "en").split("-")[0]
    symbol = CURRENCY_SYMBOLS.get(language, CURRENCY_SYMBOLS["en"]).get(currency, currency.upper() + " ")
    number = number_format(amount, decimal_pos=decimals, use_l10n=True, force_grouping=True)
    return f"{symbol}{number}"
