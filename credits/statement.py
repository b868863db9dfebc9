"""The account page's credit statement: one row per generation, paginated.

A generation writes two ledger entries (the reservation, then its capture or refund);
people think of it as one event, so the statement folds them: a delivered generation
reads "-2", a refunded one "0 (refunded)". Other entries (allowance, grants) stay one
row each. Reads only; the ledger itself is untouched.

The Balance column is the running total in the order the rows are listed, so each row's
balance is the one below it plus its change, as on a bank statement. The balance written
by a row's latest entry was not: with several generations running at once their captures
all came after their reservations, and every "-2" row read the same balance.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.core.paginator import Page, Paginator
from django.db.models import CharField, Count, Max, Q, Sum
from django.db.models.functions import Cast, Coalesce
from django.utils.translation import gettext as _

from .models import CreditEntry, Purchase

if TYPE_CHECKING:
    from stefna.accounts.models import User

STATEMENT_PAGE_SIZE = 20


@dataclass
class StatementRow:
    at: datetime
    amount: int
    label: str
    note: str
    generation_id: Any
    balance_after: int


# Before the ledger had a reason for it (credits migration 0014), the pipeline gave back
# the credits of a result lost at fal as a plain grant noted in English. The ledger is
# append-only, so those entries stay as written; the statement reads them as the reason.
_LEGACY_RESULT_LOST = re.compile(r"images of [0-9a-f-]{32,36} lost at fal")


def _reason(row: Mapping[str, Any]) -> str:
    if row["any_reason"] == CreditEntry.Reason.GRANT and _LEGACY_RESULT_LOST.fullmatch(row["any_note"] or ""):
        return CreditEntry.Reason.RESULT_LOST
    return row["any_reason"]


def _label(reason: str, *, refunds: int, captures: int, is_generation: bool) -> str:
    if not is_generation:
        return str(CreditEntry.Reason(reason).label)
    if refunds:
        return _("Generation refunded")
    if captures:
        return _("Generation delivered")
    return _("Generation in progress (reserved)")


# A grant's or an adjustment's reason is written by a person (staff in the admin, an
# operator with `grant_credits`) for the account's owner to read.
_NOTED_BY_PEOPLE = (CreditEntry.Reason.GRANT, CreditEntry.Reason.ADJUST)


def _note(row: Mapping[str, Any], pack_names: dict[uuid.UUID, str]) -> str:
    """What the statement adds after a row's label: a purchase's pack, in the reader's
    language, or the reason a person wrote for a grant. The notes the code writes on other
    entries (a refunded generation's error code, "dispute du_… won", "refund of $4.99")
    are for staff, in English, and say nothing the label and the generation's own page
    don't."""
    if row["any_reason"] == CreditEntry.Reason.PURCHASE and row["purchase_key"]:
        return pack_names.get(uuid.UUID(row["purchase_key"]), "")
    return (row["any_note"] or "") if _reason(row) in _NOTED_BY_PEOPLE else ""


def statement_page(*, user: User, page_number: str | int | None = 1, per_page: int = STATEMENT_PAGE_SIZE) -> Page:  # type: ignore[type-arg]
    """One page of folded rows, newest first: a count, a page of groups, their balances."""
    groups = (
        CreditEntry.objects.filter(user=user)
        .annotate(group=Coalesce(Cast("generation_id", CharField()), Cast("id", CharField())))
        .values("group")
        .annotate(
            last_at=Max("created_at"),
            total=Sum("amount"),
            any_reason=Max("reason"),
            any_note=Max("note"),
            generation_key=Max(Cast("generation_id", CharField())),
            purchase_key=Max(Cast("purchase_id", CharField())),
            refunds=Count("id", filter=Q(reason=CreditEntry.Reason.REFUND)),
            captures=Count("id", filter=Q(reason=CreditEntry.Reason.CAPTURE)),
            last_id=Max("id"),
        )
        .order_by("-last_at", "-last_id")
    )
    page = Paginator(groups, per_page).get_page(page_number)
    # The ledger's running totals add up (check_ledger proves it), so the balance after
    # the newest row is the sum of every entry, and each older row's is the one above it
    # less that row's change. A later page starts below the totals of the rows before it.
    balance = CreditEntry.objects.filter(user=user).aggregate(total=Sum("amount"))["total"] or 0
    balance -= sum(row["total"] for row in groups[: page.start_index() - 1]) if page.number > 1 else 0
    # A purchase's entry notes its pack's English name (the ledger is written once, in no
    # one's language): the statement shows the pack's name in the reader's language instead.
    bought = [
        uuid.UUID(row["purchase_key"])
        for row in page.object_list
        if row["any_reason"] == CreditEntry.Reason.PURCHASE and row["purchase_key"]
    ]
    pack_names = {
        purchase.pk: purchase.pack.display_name
        for purchase in (Purchase.objects.filter(pk__in=bought).select_related("pack") if bought else [])
    }
    rows = []
    for row in page.object_list:
        # A UUID cast to text differs by database (SQLite: bare hex); parse it back.
        generation_id = uuid.UUID(row["generation_key"]) if row["generation_key"] else None
        rows.append(
            StatementRow(
                at=row["last_at"],
                amount=row["total"],
                label=_label(
                    _reason(row),
                    refunds=row["refunds"],
                    captures=row["captures"],
                    is_generation=bool(generation_id),
                ),
                note=_note(row, pack_names),
                generation_id=generation_id,
                balance_after=balance,
            )
        )
        balance -= row["total"]
    page.object_list = rows  # type: ignore[assignment]  # the page now holds the folded rows
    return page
