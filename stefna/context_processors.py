from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest


@dataclass(frozen=True)
class HeaderQuota:
    """What the header shows on every page: the balance and the daily allowance."""

    current_balance: int
    daily_limit: int
    purchased_balance: int = 0

    @property
    def free_balance(self) -> int:
        return self.current_balance - self.purchased_balance


def header_quota_for(user: Any) -> HeaderQuota:
    """The header's numbers in one query once today's allowance is applied.

    Every page shows these, and the status card swaps them in after each generation,
    so they must be cheap: the wallet row alone. Only the first read of a UTC day goes
    through the quota service, which applies the daily allowance (the contract's
    "first read after midnight").
    """
    from credits.models import Wallet
    from credits.selectors import quota_for

    row = Wallet.objects.filter(pk=user.pk).values_list("balance", "allowance_day", "purchased_balance").first()
    if row is not None and (known := header_quota_from_wallet(*row)) is not None:
        return known
    quota = quota_for(user=user)
    return HeaderQuota(
        current_balance=quota.current_balance,
        daily_limit=quota.daily_limit,
        purchased_balance=quota.purchased_balance,
    )


def header_quota_from_wallet(balance: int, allowance_day: dt.date | None, purchased_balance: int) -> HeaderQuota | None:
    """The header's numbers from a wallet row already read (the status card reads it with
    its generation), or None when today's allowance is still to be applied: then only
    `header_quota_for` will do."""
    from credits import ledger

    if allowance_day != ledger.utc_today():
        return None
    return HeaderQuota(current_balance=balance, daily_limit=settings.DAILY_CREDITS, purchased_balance=purchased_balance)


def site(request: HttpRequest) -> dict[str, Any]:
    """Site-wide template values. The header's quota is read lazily, only if a template shows it."""
    context: dict[str, Any] = {
        "site_name": settings.SITE_NAME,
        "offline_mode": settings.OFFLINE_MODE,
        "generation_cost": settings.GENERATION_COST,
        "daily_credits": settings.DAILY_CREDITS,
    }
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        cache: dict[str, HeaderQuota] = {}

        def header_quota() -> HeaderQuota:
            if "quota" not in cache:
                cache["quota"] = header_quota_for(user)
            return cache["quota"]

        context["header_quota"] = header_quota
    return context
