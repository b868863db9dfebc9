"""Reconciliation: proof that the ledger adds up.

`find_ledger_problems()` returns a list of human-readable problems; an empty list
means the ledger is clean:

- every wallet's balance equals the sum of its user's entries, and its purchased
  balance the sum of their purchased parts (and every user with entries has a wallet);
- each entry's `balance_after` and `purchased_after` are the running totals of the
  user's entries in insertion order (`id`), never negative, the purchased bucket never
  more than the whole;
- every purchase agrees with its entries: a paid, refunded or disputed one was credited
  exactly once with its credits, a pending or expired one never, nor one paid after its
  account was closed (`paid_after_account_closed`); what refunds and disputes took back,
  less what a won dispute (once at most) and failed refunds gave back, equals
  `credits_taken_back`, and
  taken back plus already spent never exceeds the credits;
- every generation's charges line up with its status: each charge is reserved once
  for the generation's cost, settled at most once (a refund returns exactly what was
  reserved, a capture moves nothing); every charge but the latest is refunded (a
  staff retry only reserves again after a refund); the latest charge is open while the
  generation is queued or running, captured when it succeeded, refunded when it failed
  or was canceled; and every entry belongs to the generation's owner.

`python manage.py check_ledger` prints these and exits non-zero; tests call
`find_ledger_problems()` directly and assert it is empty. Generations made by test
factories have no entries and are reported, so scope such tests with `users=`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.db.models import Q, Sum

from generation.models import Generation

from .models import CreditEntry, Purchase, Wallet

if TYPE_CHECKING:
    from stefna.accounts.models import User

Reason = CreditEntry.Reason


@dataclass
class _Charge:
    reserves: list[int] = field(default_factory=list)  # amounts
    captures: list[int] = field(default_factory=list)
    refunds: list[int] = field(default_factory=list)
    reserved_purchased: list[int] = field(default_factory=list)
    refunded_purchased: list[int] = field(default_factory=list)


def find_ledger_problems(*, users: Iterable[User] | None = None) -> list[str]:
    """Everything wrong with the ledger (for all users, or only `users`). Empty means clean."""
    user_ids: list[object] | None = None if users is None else [user.pk for user in users]
    problems: list[str] = []
    problems += _balance_problems(user_ids)
    problems += _running_total_problems(user_ids)
    problems += _generation_problems(user_ids)
    problems += _purchase_problems(user_ids)
    return problems


def _scoped(queryset, user_ids, field_name="user_id"):  # type: ignore[no-untyped-def]
    return queryset if user_ids is None else queryset.filter(**{f"{field_name}__in": user_ids})


def _balance_problems(user_ids: Sequence[object] | None) -> list[str]:
    problems = []
    rows = list(
        _scoped(CreditEntry.objects.all(), user_ids)
        .values("user_id")
        .annotate(total=Sum("amount"), purchased=Sum("purchased_amount"))
        .values_list("user_id", "total", "purchased")
    )
    sums = {user_id: total for user_id, total, _ in rows}
    purchased_sums = {user_id: purchased for user_id, _, purchased in rows}
    wallets = {
        user_id: (balance, purchased)
        for user_id, balance, purchased in _scoped(Wallet.objects.all(), user_ids).values_list(
            "user_id", "balance", "purchased_balance"
        )
    }
    for user_id, (balance, purchased) in wallets.items():
        total = sums.get(user_id) or 0
        if balance != total:
            problems.append(f"user {user_id}: wallet balance {balance} but entries sum to {total}")
        if balance < 0:
            problems.append(f"user {user_id}: negative balance {balance}")
        purchased_total = purchased_sums.get(user_id) or 0
        if purchased != purchased_total:
            problems.append(
                f"user {user_id}: purchased balance {purchased} but purchased parts sum to {purchased_total}"
            )
        if not 0 <= purchased <= balance:
            problems.append(f"user {user_id}: purchased balance {purchased} outside 0…{balance}")
    for user_id, total in sums.items():
        if user_id not in wallets:
            problems.append(f"user {user_id}: {total} in entries but no wallet")
    return problems


def _running_total_problems(user_ids: Sequence[object] | None) -> list[str]:
    problems = []
    rows = (
        _scoped(CreditEntry.objects.all(), user_ids)
        .order_by("user_id", "id")
        .values_list("user_id", "id", "amount", "balance_after", "purchased_amount", "purchased_after")
    )
    current_user = None
    running = purchased_running = 0
    for user_id, entry_id, amount, balance_after, purchased_amount, purchased_after in rows.iterator(chunk_size=2000):
        if user_id != current_user:
            current_user, running, purchased_running = user_id, 0, 0
        running += amount
        purchased_running += purchased_amount
        if purchased_after != purchased_running:
            problems.append(
                f"user {user_id}: entry {entry_id} says purchased_after {purchased_after}, "
                f"running total is {purchased_running}"
            )
            purchased_running = purchased_after
        if not 0 <= purchased_running <= balance_after:
            problems.append(f"user {user_id}: entry {entry_id} puts the purchased bucket outside 0…{balance_after}")
        if balance_after != running:
            problems.append(
                f"user {user_id}: entry {entry_id} says balance_after {balance_after}, running total is {running}"
            )
            # Re-base on the recorded value so one bad row is reported once, not for every later row.
            running = balance_after
        if running < 0:
            problems.append(f"user {user_id}: entry {entry_id} takes the balance below zero ({running})")
    return problems


def _generation_problems(user_ids: Sequence[object] | None) -> list[str]:
    problems = []
    charges: dict[object, dict[int, _Charge]] = defaultdict(lambda: defaultdict(_Charge))
    owners: dict[object, set[object]] = defaultdict(set)
    entries = _scoped(CreditEntry.objects.filter(generation__isnull=False), user_ids).values_list(
        "generation_id", "charge_number", "reason", "amount", "user_id", "purchased_amount"
    )
    for generation_id, charge_number, reason, amount, user_id, purchased in entries.iterator(chunk_size=2000):
        charge = charges[generation_id][charge_number or 0]
        {Reason.RESERVE: charge.reserves, Reason.CAPTURE: charge.captures, Reason.REFUND: charge.refunds}[
            reason
        ].append(amount)
        if reason == Reason.RESERVE:
            charge.reserved_purchased.append(purchased)
        elif reason == Reason.REFUND:
            charge.refunded_purchased.append(purchased)
        owners[generation_id].add(user_id)

    generations = _scoped(Generation.objects.all(), user_ids).values_list("id", "user_id", "status", "cost")
    # Entries may point at generations of users outside the scope only if they are
    # someone else's: those show up as owner mismatches below.
    seen = set()
    for generation_id, owner_id, status, cost in generations.iterator(chunk_size=2000):
        seen.add(generation_id)
        label = f"generation {generation_id} ({status})"
        if owners[generation_id] - {owner_id}:
            problems.append(f"{label}: has entries of another user")
        problems += _charge_problems(label, status, cost, charges.get(generation_id, {}))
    for generation_id in set(charges) - seen:
        if user_ids is None:
            problems.append(f"generation {generation_id}: has entries but does not exist")
        else:
            problems.append(f"generation {generation_id}: entries of this user point at another user's generation")
    return problems


def _charge_problems(label: str, status: str, cost: int, charges: dict[int, _Charge]) -> list[str]:
    if not charges:
        return [f"{label}: never reserved"] if cost else []
    problems = []
    numbers = sorted(charges)
    if numbers != list(range(1, len(numbers) + 1)):
        problems.append(f"{label}: charges are numbered {numbers}, expected 1…{len(numbers)}")
    latest = numbers[-1]
    for number in numbers:
        charge = charges[number]
        where = f"{label} charge {number}"
        if len(charge.reserves) != 1:
            problems.append(f"{where}: {len(charge.reserves)} reservations, expected exactly 1")
        reserved = -sum(charge.reserves)
        if len(charge.reserves) == 1 and reserved != cost:
            problems.append(f"{where}: reserved {reserved}, the generation costs {cost}")
        settlements = len(charge.captures) + len(charge.refunds)
        if settlements > 1:
            problems.append(
                f"{where}: settled {settlements} times ({len(charge.captures)} captures, {len(charge.refunds)} refunds)"
            )
        for refunded in charge.refunds:
            if refunded != reserved:
                problems.append(f"{where}: refunded {refunded}, reserved {reserved}")
        for refunded_purchased in charge.refunded_purchased:
            if refunded_purchased != -sum(charge.reserved_purchased):
                problems.append(f"{where}: refund returned {refunded_purchased} purchased credits to the wrong bucket")
        for captured in charge.captures:
            if captured != 0:
                problems.append(f"{where}: capture moved {captured} credits, expected 0")
        expected = _expected_settlement(status) if number == latest else "refund"
        actual = "capture" if charge.captures else "refund" if charge.refunds else "open"
        if settlements <= 1 and actual != expected:
            if expected == "open":
                problems.append(f"{where}: already settled ({actual}) while the generation is still active")
            elif actual == "open":
                problems.append(f"{where}: not settled, expected a {expected}")
            else:
                problems.append(f"{where}: settled by {actual}, expected a {expected}")
    return problems


def _expected_settlement(status: str) -> str:
    if status == Generation.Status.SUCCEEDED:
        return "capture"
    if status in (Generation.Status.FAILED, Generation.Status.CANCELED):
        return "refund"
    return "open"


def _purchase_problems(user_ids: Sequence[object] | None) -> list[str]:
    problems = []
    credited: dict[object, list[int]] = defaultdict(list)
    taken_back: dict[object, int] = defaultdict(int)
    given_back: dict[object, int] = defaultdict(int)
    entries = _scoped(CreditEntry.objects.filter(purchase__isnull=False), user_ids).values_list(
        "purchase_id", "reason", "amount"
    )
    for purchase_id, reason, amount in entries.iterator(chunk_size=2000):
        if reason == Reason.PURCHASE:
            credited[purchase_id].append(amount)
        else:
            # Clawbacks are negative, a won dispute's or a failed refund's return positive:
            # the net is what is still taken back.
            taken_back[purchase_id] += -amount
            if reason == Reason.DISPUTE_WON:
                given_back[purchase_id] += 1
    purchases = _scoped(Purchase.objects.all(), user_ids).values_list(
        "id", "status", "credits", "credits_taken_back", "credits_already_spent", "paid_after_account_closed"
    )
    granted_states = {Purchase.Status.PAID, Purchase.Status.REFUNDED, Purchase.Status.DISPUTED}
    for purchase_id, status, credits, recorded_back, spent, never_credited in purchases.iterator(chunk_size=2000):
        label = f"purchase {purchase_id} ({status})"
        expected = [credits] if status in granted_states and not never_credited else []
        if given_back.get(purchase_id, 0) > 1:
            problems.append(f"{label}: a won dispute gave credits back {given_back[purchase_id]} times")
        if credited.get(purchase_id, []) != expected:
            problems.append(f"{label}: credited {credited.get(purchase_id, [])}, expected {expected}")
        if taken_back.get(purchase_id, 0) != recorded_back:
            problems.append(f"{label}: entries took back {taken_back.get(purchase_id, 0)}, recorded {recorded_back}")
        if recorded_back + spent > credits:
            problems.append(f"{label}: took back {recorded_back} and lost {spent} of only {credits} credits")
    return problems


def ledger_summary() -> dict[str, int]:
    """Counts for the command's success line."""
    return {
        "users": Wallet.objects.count(),
        "entries": CreditEntry.objects.count(),
        "purchases": Purchase.objects.count(),
        "generations": Generation.objects.filter(Q(credit_entries__isnull=False)).distinct().count(),
    }
