"""Reads for credits: balances, the quota and ledger history."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from . import ledger
from .models import CreditEntry, Wallet

if TYPE_CHECKING:
    from stefna.accounts.models import User

SPEND_REASONS = [CreditEntry.Reason.RESERVE, CreditEntry.Reason.REFUND]


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
    """The user's quota. Applies today's allowance first (the contract's 'first read after midnight')."""
    now = now or timezone.now()
    ledger.ensure_daily_allowance(user=user, now=now)
    midnight = dt.datetime.combine(ledger.utc_today(now), dt.time.min, tzinfo=dt.UTC)
    week_ago = now - dt.timedelta(days=7)
    # Spending is reserves minus refunds: one aggregate query over the last week.
    spent = CreditEntry.objects.filter(user=user, reason__in=SPEND_REASONS, created_at__gte=week_ago).aggregate(
        today=Sum("amount", filter=Q(created_at__gte=midnight)),
        week=Sum("amount"),
    )
    balance = Wallet.objects.values_list("balance", flat=True).get(pk=user.pk)
    return Quota(
        daily_limit=settings.DAILY_CREDITS,
        daily_used=max(0, -(spent["today"] or 0)),
        remaining=balance,
        weekly_used=max(0, -(spent["week"] or 0)),
        daily_reset=ledger.next_reset(now),
        current_balance=balance,
        timestamp=now,
    )


def balance_of(*, user: User) -> int:
    return Wallet.objects.filter(pk=user.pk).values_list("balance", flat=True).first() or 0


def entries_for(*, user: User, limit: int = 50) -> QuerySet[CreditEntry]:
    return CreditEntry.objects.filter(user=user).select_related("generation").order_by("-created_at", "-id")[:limit]
