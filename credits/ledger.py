"""The credit ledger: the only code that writes `CreditEntry` or `Wallet` rows.

Money rules (from the design documents):
- a generation costs `GENERATION_COST` (2), reserved in the transaction that creates it;
- each reservation ("charge") is settled exactly once: captured when the generation
  succeeds, refunded when it fails or is canceled. Unique constraints make a second
  settlement impossible, not just unlikely. A staff retry reserves a new charge;
- two buckets: today's free allowance and purchased credits (bought, or granted by
  staff and `grant_credits`), which never expire. Once per UTC day, at the first spend
  or quota read, the free bucket is topped up to `DAILY_CREDITS`; the purchased bucket
  is never touched by the top-up;
- a spend takes free credits first, then purchased ones; each entry records the part
  that moved the purchased bucket (`purchased_amount`), so a refund returns every credit
  to the bucket it came from. Free credits reserved on a UTC day that has ended when the
  refund comes expire at once (`allowance_expired`): the user ends with what an on-time
  refund would have left, whether or not today's allowance was applied before it;
- a paid purchase adds its credits to the purchased bucket once (`purchase_credit`); a
  refund or dispute takes back what is still unspent, never below zero (`claw_back`);
  a dispute the merchant wins gives back what it took, once (`dispute_give_back`); a
  refund that fails at Stripe gives back what its clawback took (`refund_reversed_give_back`).

Every write follows one pattern, in one transaction: lock the user's wallet row
(`SELECT … FOR UPDATE`), decide from the locked balance, update the wallet, insert the
entry with `balance_after`. The lock makes concurrent writers for one user queue, so
two requests can never spend the same credit, and each entry's `balance_after` is the
exact running total in insertion order (which `check_ledger` verifies). On SQLite,
which ignores FOR UPDATE, the same guarantee comes from `BEGIN IMMEDIATE`
(settings: transaction_mode), which serialises every writing transaction.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import TYPE_CHECKING

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.translation import gettext

from .exceptions import AccountClosed, AlreadyGranted, AlreadyReserved, AlreadySettled, InsufficientCredits
from .models import CreditEntry, Wallet

if TYPE_CHECKING:
    from generation.models import Generation
    from stefna.accounts.models import User

    from .models import Purchase

logger = logging.getLogger("credits")

Reason = CreditEntry.Reason


def utc_today(now: dt.datetime | None = None) -> dt.date:
    return (now or timezone.now()).astimezone(dt.UTC).date()


def next_reset(now: dt.datetime | None = None) -> dt.datetime:
    """The next UTC midnight, when the daily allowance is applied again."""
    today = utc_today(now)
    return dt.datetime.combine(today + dt.timedelta(days=1), dt.time.min, tzinfo=dt.UTC)


def _ensure_wallet(user_id: uuid.UUID) -> Wallet:
    # get_or_create copes with two first requests racing to create the row (it retries
    # the get after the losing INSERT's IntegrityError, inside a savepoint).
    wallet, _ = Wallet.objects.get_or_create(user_id=user_id)
    return wallet


def _lock_wallet(user_id: uuid.UUID) -> Wallet:
    """The user's wallet row (created if missing), locked until the surrounding transaction
    ends."""
    wallets = Wallet.objects.select_for_update()
    wallet = wallets.filter(pk=user_id).first()
    if wallet is None:
        _ensure_wallet(user_id)
        wallet = wallets.get(pk=user_id)
    return wallet


def _write(wallet: Wallet, *, purchased_amount: int = 0, **entry: object) -> CreditEntry:
    """Apply `entry["amount"]` (of which `purchased_amount` moves the purchased bucket,
    the rest the free one) to the locked wallet and record it. Caller holds the lock."""
    amount = int(entry["amount"])  # type: ignore[call-overload]
    if amount or purchased_amount:
        wallet.balance += amount
        wallet.purchased_balance += purchased_amount
        Wallet.objects.filter(pk=wallet.pk).update(balance=wallet.balance, purchased_balance=wallet.purchased_balance)
    return CreditEntry.objects.create(
        user_id=wallet.pk,
        balance_after=wallet.balance,
        purchased_amount=purchased_amount,
        purchased_after=wallet.purchased_balance,
        **entry,
    )


def _spend_split(wallet: Wallet, amount: int) -> int:
    """The purchased bucket's (negative) part of spending `amount`: free credits go first."""
    from_free = min(max(wallet.free_balance, 0), amount)
    return -(amount - from_free)


def allowance_top_up(free_balance: int) -> int:
    """What today's allowance adds to a free bucket holding `free_balance`: up to the
    allowance, never down. `_apply_allowance` writes it; the admin's read-only view of a
    wallet (`selectors.free_credits_as_of_today`) shows what it will be."""
    return max(0, settings.DAILY_CREDITS - free_balance)


def _apply_allowance(wallet: Wallet, today: dt.date) -> CreditEntry | None:
    """Top the locked wallet's free bucket up to the allowance if `today` was not applied yet."""
    if wallet.allowance_day is not None and wallet.allowance_day >= today:
        return None
    wallet.allowance_day = today
    Wallet.objects.filter(pk=wallet.pk).update(allowance_day=today)
    top_up = allowance_top_up(wallet.free_balance)
    if top_up == 0:
        # A free bucket at or above the allowance (a late refund of yesterday's
        # reservation) is kept as it is; purchased credits are never part of this.
        return None
    return _write(wallet, amount=top_up, reason=Reason.DAILY_ALLOWANCE, allowance_day=today)


def ensure_daily_allowance(*, user: User, now: dt.datetime | None = None) -> CreditEntry | None:
    """Top the user up to the daily allowance if today's (UTC) allowance was not applied yet.

    Returns the allowance entry when one was written. Cheap when the day is already
    applied: one primary-key read, no lock.
    """
    _, entry = _wallet_with_allowance(user, utc_today(now))
    return entry


def wallet_for(*, user: User, now: dt.datetime | None = None) -> Wallet:
    """The user's wallet with today's allowance applied: one read when it already is.

    For reads (the quota); the balance is a snapshot, never a basis for spending.
    """
    wallet, _ = _wallet_with_allowance(user, utc_today(now))
    return wallet


def _wallet_with_allowance(user: User, today: dt.date) -> tuple[Wallet, CreditEntry | None]:
    wallet = _ensure_wallet(user.pk)
    if wallet.allowance_day is not None and wallet.allowance_day >= today:
        return wallet, None
    with transaction.atomic():
        # Re-checked under the lock: of two concurrent first reads, the second sees
        # the day already applied. The unique constraint (user, allowance_day) backs
        # this up in the database.
        wallet = _lock_wallet(user.pk)
        return wallet, _apply_allowance(wallet, today)


def reserve(*, user: User, generation: Generation, amount: int, new_generation: bool = False) -> CreditEntry:
    """Take `amount` from the user's balance for `generation`, or raise InsufficientCredits.

    Call inside the transaction that creates (or, for a retry, restarts) the generation,
    so a refusal leaves no generation behind and a crash leaves no reservation without
    its generation. A generation whose latest charge is still open (not refunded) cannot
    be reserved again (AlreadyReserved); one that was captured cannot either (AlreadySettled).
    `new_generation=True` says the generation was created in this transaction, so this
    is its first charge and there is nothing to look up (the unique constraint, one
    reservation per charge number, would refuse a wrong claim).
    """
    if amount <= 0:
        raise ValueError("a reservation must be a positive amount")
    if generation.user_id != user.pk:
        raise ValueError("a generation is paid for by its owner")
    # A new generation's creation fails as a whole when its reservation does, so it
    # needs no savepoint to fall back to (two statements fewer on every request).
    with transaction.atomic(savepoint=not new_generation):
        if not lock_open_account(user.pk):
            # Deleted while this request was on its way: nothing new is charged for it.
            raise AccountClosed()
        wallet = _lock_wallet(user.pk)
        today = utc_today()
        _apply_allowance(wallet, today)
        charge_number = 1 if new_generation else _next_charge_number(generation)
        if wallet.balance < amount:
            raise insufficient_credits(balance=wallet.balance, cost=amount)
        return _write(
            wallet,
            amount=-amount,
            purchased_amount=_spend_split(wallet, amount),
            reason=Reason.RESERVE,
            generation=generation,
            charge_number=charge_number,
            # The day whose allowance its free credits came from, as read above: the
            # entry's created_at is stamped a moment later, after midnight at worst.
            allowance_day=today,
        )


def lock_open_account(user_id: uuid.UUID) -> bool:
    """Lock the account's row until the surrounding transaction ends; True if it is open.

    A charge takes this lock before the wallet's, and account deletion takes it first
    (stefna/accounts/deletion.py), so whichever comes second waits for the other to
    commit: a charge that was first is seen, and cancelled, by the deletion; one that
    was second finds the account closed. FOR NO KEY UPDATE, not FOR UPDATE: rows that
    merely reference the account (a worker writing a ledger entry, which takes FOR KEY
    SHARE on it for the foreign key) must not wait for it, or a worker holding a
    generation would wait for a deletion waiting for that generation.
    """
    return bool(
        get_user_model()
        .objects.select_for_update(no_key=True)
        .filter(pk=user_id)
        .values_list("is_active", flat=True)
        .first()
    )


def insufficient_credits(*, balance: int, cost: int) -> InsufficientCredits:
    """The out-of-credits error, offering to buy credits (the detail carries the link)."""
    reset_at = next_reset()
    return InsufficientCredits(
        gettext(
            "This costs %(cost)s credits and you have %(balance)s. "
            "Your daily credits refill at %(time)s UTC, or you can buy credits now."
        )
        % {"cost": cost, "balance": balance, "time": formats.time_format(reset_at)},
        detail={
            "balance": balance,
            "cost": cost,
            "daily_reset": reset_at.isoformat(),
            "buy_credits_url": reverse("credits:buy"),
        },
    )


# A reservation: (amount, charge number, purchased part, the UTC day it drew its free credits from).
Charge = tuple[int, int, int, dt.date]
# (amount, reason, charge number, purchased part, created at, allowance day)
ChargeEntry = tuple[int, str, int | None, int, dt.datetime, dt.date | None]
CHARGE_ENTRY_FIELDS = ("amount", "reason", "charge_number", "purchased_amount", "created_at", "allowance_day")


def _latest_charge(generation: Generation) -> tuple[Charge | None, str | None]:
    """The generation's latest reservation (see `Charge`), and how that charge was
    settled (None: still open).

    One small query: a generation has a handful of entries (one reservation and one
    settlement per charge). Caller holds the wallet lock, so no settlement is in flight.
    """
    entries = CreditEntry.objects.filter(generation_id=generation.pk).values_list(*CHARGE_ENTRY_FIELDS)
    return _charge_state(list(entries))


def _charge_state(entries: list[ChargeEntry]) -> tuple[Charge | None, str | None]:
    """(latest reservation as a `Charge`, its settlement reason or None) from one
    generation's entries (see `ChargeEntry`)."""
    reservations = [
        # Reservations made before their day was recorded: the day they were stamped.
        (amount, number or 0, purchased, day or utc_today(at))
        for amount, reason, number, purchased, at, day in entries
        if reason == Reason.RESERVE
    ]
    if not reservations:
        return None, None
    latest = max(reservations, key=lambda reservation: reservation[1])
    settled = next(
        (
            reason
            for _, reason, number, _, _, _ in entries
            if (number or 0) == latest[1] and reason in CreditEntry.SETTLEMENT_REASONS
        ),
        None,
    )
    return latest, settled


def _next_charge_number(generation: Generation) -> int:
    """1 for a new generation; n + 1 after charge n was refunded. Caller holds the wallet lock."""
    latest, settled = _latest_charge(generation)
    if latest is None:
        return 1
    if settled is None:
        raise AlreadyReserved(detail={"generation_id": str(generation.pk), "charge_number": latest[1]})
    if settled == Reason.CAPTURE:
        raise AlreadySettled("This generation was delivered and paid for; it cannot be charged again.")
    return latest[1] + 1


def _settle(*, generation: Generation, reason: str, note: str = "", by: User | None = None) -> CreditEntry | None:
    """Capture or refund the generation's latest charge. None when there is nothing to settle."""
    try:
        with transaction.atomic():
            wallet = _lock_wallet(generation.user_id)
            # Read under the wallet lock: a concurrent settlement of this generation has
            # committed by now (it held the same lock), so this sees it.
            reserved, settled = _latest_charge(generation)
            if reserved is None or settled is not None:
                return None
            amount, charge_number, purchased, reserved_on = reserved
            refunding = reason == Reason.REFUND
            today = utc_today()
            if refunding:
                # Today's allowance first, as every other write does: the outcome must not
                # depend on whether something read the quota between midnight and this refund.
                _apply_allowance(wallet, today)
            entry = _write(
                wallet,
                # A refund returns each credit to the bucket it was reserved from.
                amount=-amount if refunding else 0,
                purchased_amount=-purchased if refunding else 0,
                reason=reason,
                generation=generation,
                charge_number=charge_number,
                note=note[:200],
                created_by=by,
            )
            free_part = purchased - amount  # both negative: the reservation less its purchased part
            if refunding and free_part and reserved_on < today:
                # Reserved from the free allowance of a UTC day that is over. Had the job
                # failed before midnight, those credits would have been in the bucket the
                # top-up filled to the allowance, no more; given back on top of today's
                # they would let a user bank free credits by cancelling after midnight.
                # They expire, so the user ends exactly as after an on-time refund.
                # Bought credits never expire: they stay returned.
                _write(wallet, amount=-free_part, reason=Reason.ALLOWANCE_EXPIRED, note=str(generation.pk))
            return entry
    except IntegrityError:
        # Only reachable if a writer bypassed the lock; the unique constraint refused
        # the second settlement and the savepoint undid its balance change.
        if CreditEntry.objects.filter(generation=generation, reason__in=CreditEntry.SETTLEMENT_REASONS).exists():
            logger.warning("generation %s: second %s refused by the database", generation.pk, reason)
            return None
        raise


def capture(*, generation: Generation) -> CreditEntry | None:
    """Settle a delivered generation's charge. Returns None if it was already settled (or never reserved)."""
    return _settle(generation=generation, reason=Reason.CAPTURE)


def capture_many(*, generations: list[Generation]) -> list[CreditEntry]:
    """`capture` for several delivered generations at once (the worker finishes jobs in
    batches): the same rules, in one transaction of five statements however many.

    Wallets are locked in primary-key order, so two batches never wait on each other in
    a circle. A generation already settled (or never reserved) is skipped. Captures move
    no credits, so each entry's balance_after is its wallet's locked balance.
    """
    generations = list({generation.pk: generation for generation in generations}.values())
    if not generations:
        return []
    with transaction.atomic():
        wallets = {
            wallet.pk: wallet
            for wallet in Wallet.objects.select_for_update()
            .filter(pk__in={generation.user_id for generation in generations})
            .order_by("pk")
        }
        entries: dict[uuid.UUID, list[ChargeEntry]] = {}
        rows = CreditEntry.objects.filter(generation_id__in=[generation.pk for generation in generations])
        for generation_id, *entry in rows.values_list("generation_id", *CHARGE_ENTRY_FIELDS):
            entries.setdefault(generation_id, []).append(tuple(entry))  # type: ignore[arg-type]
        captures = []
        for generation in generations:
            reserved, settled = _charge_state(entries.get(generation.pk, []))
            if reserved is None or settled is not None or generation.user_id not in wallets:
                continue
            captures.append(
                CreditEntry(
                    user_id=generation.user_id,
                    balance_after=wallets[generation.user_id].balance,
                    purchased_after=wallets[generation.user_id].purchased_balance,
                    amount=0,
                    reason=Reason.CAPTURE,
                    generation=generation,
                    charge_number=reserved[1],
                )
            )
        return CreditEntry.objects.bulk_create(captures)


def refund(*, generation: Generation, note: str = "", by: User | None = None) -> CreditEntry | None:
    """Give a failed or canceled generation's credits back, once.

    Returns None if the charge was already settled (captured or refunded) or never
    reserved, so a failure delivered twice (webhook and poller) refunds once.
    """
    return _settle(generation=generation, reason=Reason.REFUND, note=note, by=by)


def grant(
    *,
    user: User,
    amount: int,
    note: str = "",
    by: User | None = None,
    reason: str = Reason.GRANT,
    grant_key: uuid.UUID | None = None,
) -> CreditEntry:
    """Add credits outside any generation (a grant), or, as an adjustment, add or remove some.
    A grant the code makes for a known cause names it as its reason (`RESULT_LOST`), so
    that the statement can tell the owner why in their language.

    `grant_key` is the one-time key of the staff form that asked: a second call with it for
    the same user (the form sent twice) adds nothing and raises AlreadyGranted.

    Granted credits (and positive adjustments) go to the purchased bucket, which never
    expires; a negative adjustment removes credits the way a spend does, free ones first.
    Today's allowance is applied first, so a grant always lands on top of it.
    """
    if reason not in (Reason.GRANT, Reason.ADJUST, Reason.RESULT_LOST):
        raise ValueError(f"grant() cannot write {reason!r} entries")
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValueError("amount must be a whole number")
    if amount == 0:
        raise ValueError("amount must not be zero")
    if reason in (Reason.GRANT, Reason.RESULT_LOST) and amount < 0:
        raise ValueError("a grant must be positive; remove credits with an adjustment")
    try:
        with transaction.atomic():
            wallet = _lock_wallet(user.pk)
            # Read under the wallet lock: a submit of the same form that got the lock first
            # has committed its entry by now, so this sees it.
            if grant_key is not None and CreditEntry.objects.filter(user_id=user.pk, grant_key=grant_key).exists():
                raise AlreadyGranted()
            _apply_allowance(wallet, utc_today())
            if wallet.balance + amount < 0:
                raise InsufficientCredits(
                    f"The balance is {wallet.balance}; removing {-amount} would make it negative.",
                    detail={"balance": wallet.balance, "amount": amount},
                )
            purchased = amount if amount > 0 else _spend_split(wallet, -amount)
            return _write(
                wallet,
                amount=amount,
                purchased_amount=purchased,
                reason=reason,
                note=note[:200],
                created_by=by,
                grant_key=grant_key,
            )
    except IntegrityError:
        # Only reachable if a writer bypassed the lock: the unique constraint (user,
        # grant_key) refused the second entry and the savepoint undid its balance change.
        if grant_key is not None and CreditEntry.objects.filter(user_id=user.pk, grant_key=grant_key).exists():
            raise AlreadyGranted() from None
        raise


def purchase_credit(*, purchase: Purchase) -> CreditEntry:
    """Add a paid purchase's credits to the purchased bucket.

    Only the payments grant function calls this, inside the transaction that marks the
    purchase paid while holding its row lock; the unique constraint (one `purchase`
    entry per purchase) refuses a second credit even if a caller forgot that lock.
    """
    if purchase.user_id is None:
        raise ValueError("a purchase without an account cannot be credited")
    with transaction.atomic():
        wallet = _lock_wallet(purchase.user_id)
        _apply_allowance(wallet, utc_today())
        return _write(
            wallet,
            amount=purchase.credits,
            purchased_amount=purchase.credits,
            reason=Reason.PURCHASE,
            purchase=purchase,
            note=purchase.pack.name[:200] if purchase.pack_id else "",
        )


def claw_back(*, purchase: Purchase, credits: int, note: str = "") -> int:
    """Take up to `credits` of a refunded or disputed purchase back from the purchased
    bucket, never below zero. Returns how many were taken (the rest were already spent).

    The caller holds the purchase's row lock (refund events for one purchase queue).
    """
    if credits <= 0 or purchase.user_id is None:
        return 0
    with transaction.atomic():
        wallet = _lock_wallet(purchase.user_id)
        taken = min(credits, wallet.purchased_balance)
        if taken:
            _write(
                wallet,
                amount=-taken,
                purchased_amount=-taken,
                reason=Reason.CLAWBACK,
                purchase=purchase,
                note=note[:200],
            )
        return taken


def dispute_give_back(*, purchase: Purchase, credits: int, note: str = "") -> CreditEntry | None:
    """Give back to the purchased bucket the credits a dispute took, once the merchant won it.

    Only the payments function that ends a won dispute calls this, holding the purchase's
    row lock, with exactly what that dispute's `claw_back` took; the unique constraint (one
    `dispute_won` entry per purchase) refuses a second return even without that lock.
    None when the dispute took nothing (the buyer had spent it all).
    """
    return _give_back_purchased(purchase, credits, reason=Reason.DISPUTE_WON, note=note)


def refund_reversed_give_back(*, purchase: Purchase, credits: int, note: str = "") -> CreditEntry | None:
    """Give back to the purchased bucket credits a refund's clawback took, once Stripe says
    that refund failed or was canceled (the money stayed with us).

    Only the payments function that applies a failed refund calls this, holding the
    purchase's row lock, with at most what that purchase's clawbacks still hold; a purchase
    may see several refunds fail, so there is no one-per-purchase constraint here: the
    purchase row's totals (`amount_refunded`, `credits_taken_back`) make it once per refund.
    None when there is nothing to give back.
    """
    return _give_back_purchased(purchase, credits, reason=Reason.REFUND_REVERSED, note=note)


def _give_back_purchased(purchase: Purchase, credits: int, *, reason: str, note: str) -> CreditEntry | None:
    """The write both give-backs share: `credits` back into the purchased bucket, naming
    the purchase. Each reason keeps its one public writer above."""
    if credits <= 0 or purchase.user_id is None:
        return None
    with transaction.atomic():
        wallet = _lock_wallet(purchase.user_id)
        return _write(
            wallet,
            amount=credits,
            purchased_amount=credits,
            reason=reason,
            purchase=purchase,
            note=note[:200],
        )
