"""The credit ledger: the only code that writes `CreditEntry` or `Wallet` rows.

Money rules (from the design documents):
- a generation costs `GENERATION_COST` (2), reserved in the transaction that creates it;
- it is settled exactly once: captured when it succeeds, refunded when it fails or is
  canceled. Unique constraints make a second settlement impossible, not just unlikely;
- once per UTC day, at the first spend or quota read, a balance below the allowance is
  topped up to `DAILY_CREDITS`; credits above it (grants) are kept.

Every balance change is a conditional UPDATE on the wallet row followed by the entry
insert in the same transaction. The UPDATE takes the row lock, so concurrent spenders
queue on it and the `balance >= amount` test is re-evaluated on the latest row: two
requests can never spend the same credit.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from .exceptions import InsufficientCredits
from .models import CreditEntry, Wallet

if TYPE_CHECKING:
    from generation.models import Generation
    from stefna.accounts.models import User

Reason = CreditEntry.Reason


def utc_today(now: dt.datetime | None = None) -> dt.date:
    return (now or timezone.now()).astimezone(dt.UTC).date()


def next_reset(now: dt.datetime | None = None) -> dt.datetime:
    """The next UTC midnight, when the daily allowance is applied again."""
    today = utc_today(now)
    return dt.datetime.combine(today + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)


def _wallet(user: User) -> Wallet:
    wallet, _ = Wallet.objects.get_or_create(user=user)
    return wallet


def _current_balance(user: User) -> int:
    return Wallet.objects.values_list("balance", flat=True).get(pk=user.pk)


def ensure_daily_allowance(*, user: User, now: dt.datetime | None = None) -> None:
    """Top the user up to the daily allowance if today's allowance was not applied yet."""
    today = utc_today(now)
    wallet = _wallet(user)
    if wallet.allowance_day == today:
        return
    with transaction.atomic():
        # Claiming the day with a conditional UPDATE makes two concurrent first-reads
        # apply the allowance once: the loser updates nothing and leaves.
        claimed = (
            Wallet.objects.filter(pk=user.pk)
            .filter(Q(allowance_day__lt=today) | Q(allowance_day__isnull=True))
            .update(allowance_day=today)
        )
        if not claimed:
            return
        balance = _current_balance(user)
        top_up = settings.DAILY_CREDITS - balance
        if top_up <= 0:
            return
        Wallet.objects.filter(pk=user.pk).update(balance=F("balance") + top_up)
        CreditEntry.objects.create(
            user=user,
            amount=top_up,
            reason=Reason.DAILY_ALLOWANCE,
            balance_after=balance + top_up,
            allowance_day=today,
        )


def reserve(*, user: User, generation: Generation, amount: int) -> CreditEntry:
    """Take `amount` from the user's balance for `generation`, or raise InsufficientCredits.

    Call inside the transaction that creates the generation, so a refusal leaves no
    generation behind and a crash leaves no reservation without its generation.
    """
    ensure_daily_allowance(user=user)
    with transaction.atomic():
        taken = Wallet.objects.filter(pk=user.pk, balance__gte=amount).update(balance=F("balance") - amount)
        if not taken:
            balance = _current_balance(user)
            reset_at = next_reset()
            raise InsufficientCredits(
                f"This costs {amount} credits and you have {balance}. "
                f"Your daily credits refill at {reset_at:%H:%M} UTC.",
                detail={"balance": balance, "cost": amount, "daily_reset": reset_at.isoformat()},
            )
        return CreditEntry.objects.create(
            user=user,
            amount=-amount,
            reason=Reason.RESERVE,
            generation=generation,
            balance_after=_current_balance(user),
        )


def _settle(*, generation: Generation, reason: str, note: str = "") -> CreditEntry | None:
    reserved = CreditEntry.objects.filter(generation=generation, reason=Reason.RESERVE).first()
    if reserved is None:
        return None
    amount = -reserved.amount if reason == Reason.REFUND else 0
    try:
        with transaction.atomic():
            if amount:
                Wallet.objects.filter(pk=generation.user_id).update(balance=F("balance") + amount)
            return CreditEntry.objects.create(
                user_id=generation.user_id,
                amount=amount,
                reason=reason,
                generation=generation,
                balance_after=Wallet.objects.values_list("balance", flat=True).get(pk=generation.user_id),
                note=note[:200],
            )
    except IntegrityError:
        # Already captured or refunded: the unique constraint turned the second
        # settlement into a no-op, and the savepoint undid its balance change.
        return None


def capture(*, generation: Generation) -> CreditEntry | None:
    """Settle a delivered generation. Returns None if it was already settled."""
    return _settle(generation=generation, reason=Reason.CAPTURE)


def refund(*, generation: Generation, note: str = "") -> CreditEntry | None:
    """Give a failed or canceled generation's credits back. Returns None if already settled."""
    return _settle(generation=generation, reason=Reason.REFUND, note=note)


def grant(
    *,
    user: User,
    amount: int,
    note: str = "",
    by: User | None = None,
    reason: str = Reason.GRANT,
) -> CreditEntry:
    """Add (or, as an adjustment, remove) credits outside any generation."""
    if reason not in (Reason.GRANT, Reason.ADJUST):
        raise ValueError(f"grant() cannot write {reason!r} entries")
    if amount == 0:
        raise ValueError("amount must not be zero")
    _wallet(user)
    with transaction.atomic():
        changed = Wallet.objects.filter(pk=user.pk, balance__gte=max(0, -amount)).update(balance=F("balance") + amount)
        if not changed:
            raise InsufficientCredits("An adjustment cannot make a balance negative.")
        return CreditEntry.objects.create(
            user=user,
            amount=amount,
            reason=reason,
            balance_after=_current_balance(user),
            note=note[:200],
            created_by=by,
        )
