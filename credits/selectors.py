"""Reads for credits: balances, the quota and ledger history."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import Exists, OuterRef, Q, QuerySet, Sum
from django.utils import timezone

from . import ledger
from .models import CreditEntry, Wallet

if TYPE_CHECKING:
    from stefna.accounts.models import User


@dataclass(frozen=True)
class Quota:
    daily_limit: int
    daily_used: int
    remaining: int
    weekly_used: int
    daily_reset: dt.datetime
    current_balance: int
    timestamp: dt.datetime


def quota_for(*, user: User, now: dt.datetime | None = None) -> Quota:
    """The user's quota. Applies today's allowance first (the contract's 'first read after midnight').

    `daily_used` is what the user's reservations made today (UTC) cost, less those that
    were refunded, whenever the refund came: a job reserved yesterday and refunded today
    does not make today's figure smaller. `weekly_used` is the same over the last seven
    UTC days, today included, so it is never below `daily_used`.
    """
    now = now or timezone.now()
    # Two queries in the steady state: this wallet read and the spending aggregate.
    wallet = ledger.wallet_for(user=user, now=now)
    midnight = dt.datetime.combine(ledger.utc_today(now), dt.time.min, tzinfo=dt.UTC)
    week_start = midnight - dt.timedelta(days=6)
    refunded = Exists(
        CreditEntry.objects.filter(
            generation=OuterRef("generation"),
            charge_number=OuterRef("charge_number"),
            reason=CreditEntry.Reason.REFUND,
        )
    )
    # One query: the week's reservations that were not refunded, summed for today and the week.
    spent = (
        CreditEntry.objects.filter(user=user, reason=CreditEntry.Reason.RESERVE, created_at__gte=week_start)
        .filter(~refunded)
        .aggregate(
            today=Sum("amount", filter=Q(created_at__gte=midnight)),
            week=Sum("amount"),
        )
    )
    balance = wallet.balance
    return Quota(
        daily_limit=settings.DAILY_CREDITS,
        daily_used=-(spent["today"] or 0),
        remaining=balance,
        weekly_used=-(spent["week"] or 0),
        daily_reset=ledger.next_reset(now),
        current_balance=balance,
        timestamp=now,
    )


def balance_of(*, user: User) -> int:
    return Wallet.objects.filter(pk=user.pk).values_list("balance", flat=True).first() or 0


def entries_for(*, user: User, limit: int = 50) -> QuerySet[CreditEntry]:
    return CreditEntry.objects.filter(user=user).select_related("generation").order_by("-created_at", "-id")[:limit]
