"""Reads for credits: balances, the quota, ledger history, packs and purchases."""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import connection
from django.db.models import Exists, OuterRef, Sum
from django.db.models.options import Options
from django.utils import timezone

from stefna.pagination import Page, keyset_page

from . import ledger
from .models import CreditEntry, CreditPack, Purchase, Wallet

if TYPE_CHECKING:
    from stefna.accounts.models import User


@dataclass(frozen=True)
class Quota:
    daily_limit: int
    daily_used: int
    remaining: int  # what is left of today's free allowance
    weekly_used: int
    daily_reset: dt.datetime
    current_balance: int  # free + purchased
    timestamp: dt.datetime
    purchased_balance: int = 0


def quota_for(*, user: User, now: dt.datetime | None = None) -> Quota:
    """The user's quota. Applies today's allowance first (the contract's 'first read after midnight').

    `daily_used` is what the user's reservations made today (UTC) cost, less those that
    were refunded, whenever the refund came: a job reserved yesterday and refunded today
    does not make today's figure smaller. `weekly_used` is the same over the last seven
    UTC days, today included, so it is never below `daily_used`.
    """
    now = now or timezone.now()
    today = ledger.utc_today(now)
    midnight = dt.datetime.combine(today, dt.time.min, tzinfo=dt.UTC)
    week_start = midnight - dt.timedelta(days=6)
    # One query in the steady state: the spending figures and the balance together.
    today_spent, week_spent, balance, purchased = _spending_and_balance(
        user_id=user.pk, today=today, midnight=midnight, week_start=week_start
    )
    if balance is None or purchased is None:
        # No wallet yet, or today's allowance not applied yet (the first read after UTC
        # midnight): the ledger applies it under the wallet's lock. Allowances are not
        # reservations, so the spending figures above stay right.
        wallet = ledger.wallet_for(user=user, now=now)
        balance, purchased = wallet.balance, wallet.purchased_balance
    return Quota(
        daily_limit=settings.DAILY_CREDITS,
        daily_used=-(today_spent or 0),
        remaining=balance - purchased,
        weekly_used=-(week_spent or 0),
        daily_reset=ledger.next_reset(now),
        current_balance=balance,
        timestamp=now,
        purchased_balance=purchased,
    )


@functools.cache
def _spending_sql(vendor: str) -> str:
    """The quota's one statement, as static SQL.

    The quota is read on every API call a client makes to show credits and on every
    page header, and building this query through the ORM (an aggregate over an
    anti-joined subquery, plus the wallet read) was most of its CPU, for a statement
    PostgreSQL runs in a fraction of a millisecond (bench/README.md). Table and column names
    come from the models, so a rename still reaches it. Equivalent ORM:

        CreditEntry.objects.filter(user=user, reason=RESERVE, created_at__gte=week_start)
        .filter(~Exists(CreditEntry.objects.filter(generation=OuterRef("generation"),
                        charge_number=OuterRef("charge_number"), reason=REFUND)))
        .aggregate(today=Sum("amount", filter=Q(created_at__gte=midnight)), week=Sum("amount"))

    plus the wallet's balance and purchased balance when its `allowance_day` is today
    (NULL otherwise, or when there is no wallet, which sends the caller through the ledger).
    """
    quote = connection.ops.quote_name  # the backend's quoting: hence the cache key `vendor`
    entry, wallet = CreditEntry._meta, Wallet._meta

    def column(meta: Options, name: str) -> str:  # type: ignore[type-arg]
        return quote(meta.get_field(name).column)  # type: ignore[union-attr, arg-type]

    entries, wallets = quote(entry.db_table), quote(wallet.db_table)
    amount, created_at, reason = column(entry, "amount"), column(entry, "created_at"), column(entry, "reason")
    generation, charge = column(entry, "generation"), column(entry, "charge_number")

    def wallet_value(name: str) -> str:
        return (
            f"(SELECT CASE WHEN w.{column(wallet, 'allowance_day')} >= %s THEN w.{column(wallet, name)} END "  # noqa: S608
            f"FROM {wallets} w WHERE w.{column(wallet, 'user')} = %s)"
        )

    # Only identifiers from the models are formatted in; every value is a parameter.
    return (
        f"SELECT SUM(CASE WHEN e.{created_at} >= %s THEN e.{amount} END), SUM(e.{amount}), "  # noqa: S608
        f"{wallet_value('balance')}, {wallet_value('purchased_balance')} "
        f"FROM {entries} e "
        f"WHERE e.{column(entry, 'user')} = %s AND e.{reason} = %s AND e.{created_at} >= %s "
        f"AND NOT EXISTS (SELECT 1 FROM {entries} r WHERE r.{generation} = e.{generation} "
        f"AND r.{charge} = e.{charge} AND r.{reason} = %s)"
    )


def _spending_and_balance(
    *, user_id: uuid.UUID, today: dt.date, midnight: dt.datetime, week_start: dt.datetime
) -> tuple[int | None, int | None, int | None, int | None]:
    # Parameters go through the fields' own conversion, as the ORM would send them
    # (SQLite stores UUIDs as hex and datetimes as naive UTC text).
    user = CreditEntry._meta.get_field("user").target_field  # type: ignore[union-attr]
    created_at = CreditEntry._meta.get_field("created_at")
    day = Wallet._meta.get_field("allowance_day")
    user_param = user.get_db_prep_value(user_id, connection)
    day_param = day.get_db_prep_value(today, connection)
    params = [
        created_at.get_db_prep_value(midnight, connection),
        day_param,
        user_param,
        day_param,
        user_param,
        user_param,
        CreditEntry.Reason.RESERVE.value,
        created_at.get_db_prep_value(week_start, connection),
        CreditEntry.Reason.REFUND.value,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_spending_sql(connection.vendor), params)
        today_spent, week_spent, balance, purchased = cursor.fetchone()
    return today_spent, week_spent, balance, purchased


@dataclass(frozen=True)
class HeaderQuota:
    """What the header shows on every page: the balance and the daily allowance."""

    current_balance: int
    daily_limit: int
    purchased_balance: int = 0

    @property
    def free_balance(self) -> int:
        return self.current_balance - self.purchased_balance


def header_quota_for(*, user: User) -> HeaderQuota:
    """The header's numbers in one query once today's allowance is applied.

    Every page shows these, and the status card swaps them in after each generation,
    so they must be cheap: the wallet row alone. Only the first read of a UTC day goes
    through the quota service, which applies the daily allowance (the contract's
    "first read after midnight").
    """
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
    if allowance_day != ledger.utc_today():
        return None
    return HeaderQuota(current_balance=balance, daily_limit=settings.DAILY_CREDITS, purchased_balance=purchased_balance)


def free_credits_as_of_today(wallet: Wallet, *, now: dt.datetime | None = None) -> tuple[int, bool]:
    """What the wallet's free bucket will read today, without writing: `(free, pending)`.

    The allowance is applied at the owner's first read of a UTC day, under the wallet's
    lock (`ledger._apply_allowance`). A page that must not write (the admin's user page)
    shows what that read will find, and says the top-up is still to come (`pending`).
    """
    if wallet.allowance_day is not None and wallet.allowance_day >= ledger.utc_today(now):
        return wallet.free_balance, False
    return wallet.free_balance + ledger.allowance_top_up(wallet.free_balance), True


def purchased_credits_reserved(*, user_id: uuid.UUID) -> int:
    """Bought credits held by the user's open charges (reserved, not yet captured or refunded).

    Read under the wallet's lock for an exact figure. Only refunds and disputes that
    cannot take all they should ask, so the scan of the user's reservations is rare.
    """
    settled = CreditEntry.objects.filter(
        generation=OuterRef("generation"),
        charge_number=OuterRef("charge_number"),
        reason__in=CreditEntry.SETTLEMENT_REASONS,
    )
    open_charges = CreditEntry.objects.filter(
        user_id=user_id, reason=CreditEntry.Reason.RESERVE, purchased_amount__lt=0
    ).exclude(Exists(settled))
    return -(open_charges.aggregate(total=Sum("purchased_amount"))["total"] or 0)


def charge_reserved_at(*, generation_id: uuid.UUID, charge_number: int) -> dt.datetime | None:
    """When a generation's charge was reserved."""
    return (
        CreditEntry.objects.filter(
            generation_id=generation_id, charge_number=charge_number, reason=CreditEntry.Reason.RESERVE
        )
        .values_list("created_at", flat=True)
        .first()
    )


def bought_credits_held(*, user_ids: Iterable[uuid.UUID | None]) -> dict[uuid.UUID, int]:
    """Each user's unspent bought credits (their wallet's purchased balance), in one query;
    a user without a wallet is left out (holds none)."""
    wanted = {user_id for user_id in user_ids if user_id is not None}
    if not wanted:
        return {}
    return dict(Wallet.objects.filter(user_id__in=wanted).values_list("user_id", "purchased_balance"))


def balance_of(*, user: User) -> int:
    return Wallet.objects.filter(pk=user.pk).values_list("balance", flat=True).first() or 0


def credit_packs_for_sale() -> list[CreditPack]:
    """Active packs Stripe can charge: a pack saved with a price Stripe would refuse (see
    `CreditPack`) is not offered, rather than offered and then refused at checkout."""
    packs = CreditPack.objects.filter(active=True).order_by("sort_order", "price", "slug")
    return [pack for pack in packs if pack.price_chargeable]


def credit_packs_unchargeable() -> list[CreditPack]:
    """Active packs whose price Stripe would refuse (hidden from sale): the admin warns about them."""
    return [pack for pack in CreditPack.objects.filter(active=True).order_by("slug") if not pack.price_chargeable]


def purchase_history(*, user: User, cursor: str | None = None, limit: int | None = None) -> Page[Purchase]:
    """The user's purchases, newest first, a page at a time (the generation feed's cursors)."""
    return keyset_page(Purchase.objects.filter(user=user).select_related("pack"), cursor=cursor, limit=limit)


def purchase_get_owned(*, user: User, purchase_id: uuid.UUID | str) -> Purchase | None:
    try:
        purchase_uuid = uuid.UUID(str(purchase_id))
    except ValueError:
        return None
    return Purchase.objects.filter(pk=purchase_uuid, user=user).select_related("pack").first()


def purchase_for_payment(*, payment_intent_id: str, purchase_id: object = None) -> Purchase | None:
    """The purchase a Stripe payment intent paid (found by id, else by the metadata's purchase id)."""
    if payment_intent_id:
        purchase = Purchase.objects.filter(stripe_payment_intent_id=payment_intent_id).first()
        if purchase is not None:
            return purchase
    try:
        return Purchase.objects.filter(pk=uuid.UUID(str(purchase_id))).first() if purchase_id else None
    except ValueError:
        return None


def purchases_to_reconcile(*, older_than_seconds: int, limit: int) -> list[Purchase]:
    cutoff = timezone.now() - dt.timedelta(seconds=older_than_seconds)
    return list(
        Purchase.objects.filter(
            status=Purchase.Status.PENDING, provider=Purchase.Provider.STRIPE, created_at__lt=cutoff
        ).order_by("updated_at")[:limit]
    )


def purchases_needing_attention_count() -> int:
    return Purchase.objects.filter(needs_attention=True).count()
