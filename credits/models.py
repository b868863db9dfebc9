"""Credits: an append-only ledger plus a cached balance, in two buckets; credit packs,
purchases and the Stripe events that move them.

`credits/ledger.py` is the only code that writes `Wallet` or `CreditEntry` rows;
`credits/payments/` is the only code that writes `Purchase` or `StripeEvent` rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from credits.charge_limits import price_chargeable, price_problem, price_problem_message
from stefna.i18n_formats import format_money, in_active_language


class Wallet(models.Model):
    """A user's spendable balance, cached from the ledger.

    `balance` always equals the sum of the user's entries: it changes only in the
    same transaction as the entry that explains it, while the ledger holds this row's
    lock (SELECT … FOR UPDATE). `check_ledger` proves the two agree.

    Two buckets share the balance: `purchased_balance` (bought and granted credits,
    which never expire) and the rest, today's free allowance (`free_balance`), which
    the daily top-up resets. Spending takes free credits first.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True)
    balance = models.IntegerField(default=0)
    # db_default too: while `migrate` adds a column, the previous version still serves and inserts
    # rows without it (docs/deploy.md, Upgrades; tests/deploy/test_migrations_upgrade.py).
    purchased_balance = models.IntegerField(default=0, db_default=0)
    # The UTC day whose allowance was last applied; the allowance check is a cheap
    # comparison on this field, not a ledger query.
    allowance_day = models.DateField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(balance__gte=0), name="wallet_balance_not_negative"),
            models.CheckConstraint(
                condition=Q(purchased_balance__gte=0, purchased_balance__lte=F("balance")),
                name="wallet_purchased_within_balance",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.balance}"

    @property
    def free_balance(self) -> int:
        return self.balance - self.purchased_balance


class CreditEntry(models.Model):
    """One line of the append-only ledger. Rows are inserted, never updated or deleted.

    Generation entries carry a `charge_number`: a generation's first reservation is
    charge 1; a staff retry of a failed or canceled generation reserves again as
    charge 2, and so on. Each charge is reserved once and settled (captured or
    refunded) at most once, and the database enforces both.
    """

    class Reason(models.TextChoices):
        DAILY_ALLOWANCE = "daily_allowance", _("Daily allowance")
        RESERVE = "reserve", _("Reserved for a generation")
        CAPTURE = "capture", _("Generation delivered")
        REFUND = "refund", _("Refund")
        GRANT = "grant", _("Grant")
        ADJUST = "adjust", _("Adjustment")
        PURCHASE = "purchase", _("Credits bought")
        CLAWBACK = "clawback", _("Taken back (refund or dispute)")
        DISPUTE_WON = "dispute_won", _("Given back (dispute resolved)")
        # A refund that failed or was canceled at Stripe: the money stayed with us, so
        # what its clawback took comes back.
        REFUND_REVERSED = "refund_reversed", _("Given back (refund failed)")
        BUCKET_MOVE = "bucket_move", _("Moved to purchased credits")
        # A late refund's free part: it came from a UTC day whose allowance is over.
        ALLOWANCE_EXPIRED = "allowance_expired", _("Free credits of an earlier day expired")
        # A delivered generation whose every image fal deleted before we saved a copy: its
        # credits come back as a grant (its capture is final). A reason of its own, not a
        # note, so the statement can say so in the reader's language (generation.services.media).
        RESULT_LOST = "result_lost", _("Given back: your images were lost before they could be saved")

    GENERATION_REASONS = (Reason.RESERVE, Reason.CAPTURE, Reason.REFUND)
    SETTLEMENT_REASONS = (Reason.CAPTURE, Reason.REFUND)

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="credit_entries")
    amount = models.IntegerField(help_text="Signed: negative spends, positive adds.")
    reason = models.CharField(max_length=20, choices=Reason.choices)
    # PROTECT: a generation with money attached is never deleted, only hidden.
    generation = models.ForeignKey(
        "generation.Generation", null=True, blank=True, on_delete=models.PROTECT, related_name="credit_entries"
    )
    charge_number = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Which reservation of the generation this entry belongs to (1 = first)."
    )
    # PROTECT: a purchase with credits attached is a money record, never deleted.
    purchase = models.ForeignKey(
        "credits.Purchase", null=True, blank=True, on_delete=models.PROTECT, related_name="credit_entries"
    )
    balance_after = models.IntegerField()
    # The part of `amount` that moved the purchased bucket (the rest moved the free
    # one), and that bucket's running total: `check_ledger` checks both buckets.
    purchased_amount = models.IntegerField(default=0, db_default=0)
    purchased_after = models.IntegerField(default=0, db_default=0)
    # An allowance entry's day; on a reservation, the day whose allowance its free
    # credits came from (a refund after that day lets them expire: ledger._settle).
    allowance_day = models.DateField(null=True, blank=True)
    note = models.CharField(max_length=200, blank=True)
    # A staff grant's one-time key: the admin's grant form carries one, made when the form
    # is shown, so a double click or a browser sending the form again grants once.
    grant_key = models.UUIDField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        verbose_name_plural = "credit entries"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="credit_user_recent")]
        constraints = [
            # The database, not just the code, guarantees each charge of a generation is
            # reserved once and settled (captured or refunded) once, never both.
            models.UniqueConstraint(
                fields=["generation", "charge_number"],
                condition=Q(reason="reserve"),
                name="credit_one_reserve_per_charge",
            ),
            models.UniqueConstraint(
                fields=["generation", "charge_number"],
                condition=Q(reason__in=["capture", "refund"]),
                name="credit_one_settlement_per_charge",
            ),
            models.UniqueConstraint(
                fields=["user", "allowance_day"],
                condition=Q(reason="daily_allowance"),
                name="credit_one_allowance_per_day",
            ),
            # A purchase is credited once: the database backs the grant's own check.
            models.UniqueConstraint(
                fields=["purchase"], condition=Q(reason="purchase"), name="credit_one_grant_per_purchase"
            ),
            # A charge has one dispute, so a purchase gets back what its dispute took once.
            models.UniqueConstraint(
                fields=["purchase"], condition=Q(reason="dispute_won"), name="credit_one_dispute_return_per_purchase"
            ),
            # One grant form sent twice (or twice at once) grants each user once.
            models.UniqueConstraint(
                fields=["user", "grant_key"],
                condition=Q(grant_key__isnull=False),
                name="credit_one_entry_per_grant_key",
            ),
            models.CheckConstraint(condition=Q(balance_after__gte=0), name="credit_balance_after_not_negative"),
            models.CheckConstraint(
                condition=Q(purchased_after__gte=0, purchased_after__lte=F("balance_after")),
                name="credit_purchased_after_within_balance",
            ),
            # Generation entries name their generation and charge, purchase entries their
            # purchase; the others name neither.
            models.CheckConstraint(
                condition=(
                    Q(
                        reason__in=["reserve", "capture", "refund"],
                        generation__isnull=False,
                        charge_number__gte=1,
                        purchase__isnull=True,
                    )
                    | Q(
                        reason__in=["purchase", "clawback", "dispute_won", "refund_reversed"],
                        generation__isnull=True,
                        charge_number__isnull=True,
                        purchase__isnull=False,
                    )
                    | Q(
                        reason__in=[
                            "daily_allowance",
                            "grant",
                            "adjust",
                            "bucket_move",
                            "allowance_expired",
                            "result_lost",
                        ],
                        generation__isnull=True,
                        charge_number__isnull=True,
                        purchase__isnull=True,
                    )
                ),
                name="credit_links_match_reason",
            ),
            # The sign of every amount follows from its reason, so a bug cannot, say,
            # "refund" a negative amount.
            models.CheckConstraint(
                condition=(
                    Q(reason="reserve", amount__lt=0)
                    | Q(reason="capture", amount=0)
                    | Q(reason="refund", amount__gt=0)
                    | Q(reason="daily_allowance", amount__gt=0, allowance_day__isnull=False)
                    | Q(reason__in=["grant", "result_lost"], amount__gt=0)
                    | (Q(reason="adjust") & ~Q(amount=0))
                    | Q(reason="purchase", amount__gt=0, purchased_amount=F("amount"))
                    | Q(reason="clawback", amount__lt=0, purchased_amount=F("amount"))
                    | Q(reason="dispute_won", amount__gt=0, purchased_amount=F("amount"))
                    | Q(reason="refund_reversed", amount__gt=0, purchased_amount=F("amount"))
                    | Q(reason="bucket_move", amount=0, purchased_amount__gt=0)
                    | Q(reason="allowance_expired", amount__lt=0, purchased_amount=0)
                ),
                name="credit_amount_sign_matches_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.amount:+d} {self.reason}"


def format_price(price: int, currency: str) -> str:
    """1199, "usd" → "$11.99" in English, "US$11,99" in Bahasa Indonesia (issue 21)."""
    return format_money(price, currency)


class CreditPack(models.Model):
    """Credits for sale. The price is charged from this row, never from the client.

    A price Stripe would refuse (`credits.charge_limits`: below Stripe's minimum charge for
    the currency, above its 8-digit maximum, a three-decimal price not in steps of 10) is
    refused when a pack is created or edited (`clean_fields`, which the admin's form runs).
    Not a database constraint: a row saved before these rules must not stop the migration;
    such a pack is simply not offered (`credit_packs_for_sale`) and checkout refuses it.
    """

    slug = models.SlugField(max_length=40, unique=True)
    name = models.CharField(_("name"), max_length=80)
    # Bahasa Indonesia, edited in the admin; empty means "show the English one" (as presets).
    # db_default too: while `migrate` adds a column, the previous version still serves and inserts
    # rows without it (docs/deploy.md, Upgrades; tests/deploy/test_migrations_upgrade.py).
    name_id = models.CharField(_("name (Bahasa Indonesia)"), max_length=80, blank=True, default="", db_default="")
    credits = models.PositiveIntegerField(_("credits"))
    price = models.PositiveIntegerField(_("price"), help_text=_("In the currency's minor unit (cents for USD)."))
    currency = models.CharField(_("currency"), max_length=3, default="usd", help_text=_("ISO 4217, lower case."))
    active = models.BooleanField(_("active"), default=True)
    sort_order = models.PositiveSmallIntegerField(_("sort order"), default=0)

    class Meta:
        ordering = ["sort_order", "price", "slug"]
        constraints = [
            models.CheckConstraint(condition=Q(credits__gte=1, price__gte=1), name="credit_pack_sells_something"),
            models.CheckConstraint(condition=Q(currency__regex=r"^[a-z]{3}$"), name="credit_pack_currency_code"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.credits} credits)"

    def clean_fields(self, exclude: Collection[str] | None = None) -> None:
        # Here and not in clean(): a form without the price or currency (the list's
        # "active" and "sort order" columns) must still save, so a mispriced pack can be
        # switched off; clean() would raise for a field that form does not have.
        errors: dict[str, list[ValidationError]] = {}
        try:
            super().clean_fields(exclude=exclude)
        except ValidationError as error:
            errors = error.update_error_dict(errors)
        skipped = set(exclude or ())
        problem = None if errors or {"price", "currency"} & skipped else price_problem(self.price, self.currency)
        if problem:
            errors["price"] = [
                ValidationError(price_problem_message(problem, self.price, self.currency), code=problem.value)
            ]
        if errors:
            raise ValidationError(errors)

    @property
    def display_name(self) -> str:
        """The name in the active language (English when it has no translation), as
        `Preset.display_name`."""
        return in_active_language(self, "name")

    @property
    def price_chargeable(self) -> bool:
        return price_chargeable(self.price, self.currency)

    @property
    def price_label(self) -> str:
        return format_price(self.price, self.currency)

    @property
    def generations(self) -> int:
        """How many generations the pack pays for at today's cost (any odd credit left over
        buys none), so a buyer need not do the sum; follows settings.GENERATION_COST."""
        return self.credits // settings.GENERATION_COST


class Purchase(models.Model):
    """One attempt to buy a pack: pending until Stripe (or the offline checkout) says paid.

    States: pending → paid (credits granted, once) → refunded / disputed (unspent credits
    taken back); disputed → paid again when the dispute is won (what it took given back;
    `refunded` if refunds returned the whole price meanwhile); pending → expired (the
    checkout session ran out, or the account was deleted). A partial refund keeps `paid`
    and records `amount_refunded`. A refund that fails or is canceled at Stripe undoes its
    part: refunded → paid again, its credits given back. Credits a refund or dispute finds
    reserved for generations still running count as spent until those generations end:
    refunded, they are taken back then (`credits_in_flight`). A purchase paid after its buyer closed the account is
    `paid` but never credited (`paid_after_account_closed`) and flagged for a refund.
    Credits, price and currency are copied from the pack when the purchase starts, so
    editing a pack never changes a purchase. Only `credits/payments/` changes these rows.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        PAID = "paid", _("Paid")
        REFUNDED = "refunded", _("Refunded")
        DISPUTED = "disputed", _("Disputed")
        EXPIRED = "expired", _("Expired")

    class Provider(models.TextChoices):
        STRIPE = "stripe", "Stripe"
        OFFLINE = "offline", _("Test checkout (no money)")

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # SET_NULL: a deleted account's money records stay, without the person.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="purchases"
    )
    email = models.EmailField(blank=True, help_text="The buyer's email when they bought (for search and receipts).")
    pack = models.ForeignKey(CreditPack, on_delete=models.PROTECT, related_name="purchases")
    credits = models.PositiveIntegerField()
    price = models.PositiveIntegerField(help_text="In the currency's minor unit.")
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    provider = models.CharField(max_length=10, choices=Provider.choices, default=Provider.STRIPE)
    stripe_session_id = models.CharField(max_length=255, null=True, blank=True, unique=True)
    stripe_payment_intent_id = models.CharField(max_length=255, blank=True, db_index=True)
    checkout_url = models.URLField(max_length=2000, blank=True)
    receipt_url = models.URLField(max_length=2000, blank=True)
    # The receipt email: owed by a task the grant queues; this makes it go once.
    receipt_sent_at = models.DateTimeField(null=True, blank=True)
    amount_refunded = models.PositiveIntegerField(default=0, help_text="Refunded so far, in the minor unit.")
    credits_taken_back = models.PositiveIntegerField(default=0, help_text="Unspent credits removed after a refund.")
    credits_already_spent = models.PositiveIntegerField(
        default=0, help_text="Credits a refund or dispute should have removed but the buyer had already spent."
    )
    # What the open dispute took, part of the two totals above: a won dispute gives back
    # exactly this, so refunds before it keep what they took.
    credits_taken_by_dispute = models.PositiveIntegerField(
        default=0,
        db_default=0,
        help_text="Of the credits taken back, those the dispute took (given back if it is won).",
    )
    credits_spent_at_dispute = models.PositiveIntegerField(
        default=0,
        db_default=0,
        help_text="Of the credits already spent, those the dispute found spent (forgiven if it is won).",
    )
    # Of the credits already spent, those that were only reserved for generations still
    # running at the last take-back: if such a generation fails or is canceled, its bought
    # credits come back to this purchase (a clawback), not to the buyer.
    credits_in_flight = models.PositiveIntegerField(
        default=0,
        db_default=0,
        help_text="Of the credits already spent, those reserved for generations still running at the last take-back.",
    )
    taken_back_at = models.DateTimeField(
        null=True, blank=True, help_text="The last refund or dispute that took credits back."
    )
    # Paid when the account could no longer use credits: never credited, so refunds and
    # disputes have nothing to take back and `check_ledger` expects no `purchase` entry.
    paid_after_account_closed = models.BooleanField(
        default=False,
        db_default=False,
        help_text="Paid after the buyer's account was closed: no credits were granted; refund it.",
    )
    needs_attention = models.BooleanField(default=False, db_index=True)
    attention_note = models.TextField(blank=True)
    # The payment mismatch staff were told about (`mismatch_key`): reconciliation meets a
    # mismatched purchase again every round, and the same mismatch is flagged once, so
    # "mark as reviewed" sticks; a different one is flagged again.
    mismatch_flagged = models.CharField(
        max_length=300,
        blank=True,
        default="",
        db_default="",
        help_text="The payment mismatch staff were last alerted to (not granted).",
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    paid_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="purchase_user_recent")]
        constraints = [
            models.CheckConstraint(
                condition=Q(credits_taken_back__lte=F("credits")), name="purchase_takes_back_at_most_its_credits"
            ),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "expired"]) | Q(paid_at__isnull=False),
                name="purchase_paid_states_have_paid_at",
            ),
            models.CheckConstraint(
                condition=Q(
                    credits_taken_by_dispute__lte=F("credits_taken_back"),
                    credits_spent_at_dispute__lte=F("credits_already_spent"),
                )
                & (Q(status="disputed") | Q(credits_taken_by_dispute=0, credits_spent_at_dispute=0)),
                name="purchase_dispute_share_within_totals",
            ),
            models.CheckConstraint(
                condition=Q(paid_after_account_closed=False) | Q(credits_taken_back=0, credits_already_spent=0),
                name="purchase_never_credited_takes_nothing_back",
            ),
            models.CheckConstraint(
                condition=Q(credits_in_flight__lte=F("credits_already_spent")),
                name="purchase_in_flight_within_spent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email or self.user_id}: {self.credits} credits ({self.status})"

    @property
    def price_label(self) -> str:
        return format_price(self.price, self.currency)

    def credits_left_to_settle(self, owed_back: int) -> int:
        """Of the `owed_back` credits a refund or dispute takes back, how many are not yet
        settled: neither taken back nor written off as already spent. The take-back moves
        them (`payments.refunds`); the refund confirmation tells staff about them first."""
        return max(0, owed_back - self.credits_taken_back - self.credits_already_spent)

    @staticmethod
    def mismatch_key(*, session_id: str = "", amount: int | None = None, currency: str = "") -> str:
        """What identifies a payment mismatch, whatever a note says about it: the session
        paid when it is not the purchase's, else the amount and currency paid."""
        key = f"session:{session_id}" if amount is None else f"amount:{amount}:{currency.lower()}"
        return key[:300]


class StripeEvent(models.Model):
    """Each Stripe event id, recorded once in the transaction that acts on it.

    The primary key is the event id: a second delivery (a retry, a duplicate, a
    concurrent one) fails to insert and does nothing.
    """

    id = models.CharField(max_length=255, primary_key=True)
    type = models.CharField(max_length=100)
    purchase = models.ForeignKey(Purchase, null=True, blank=True, on_delete=models.SET_NULL, related_name="events")
    outcome = models.CharField(max_length=200, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.id} {self.type}"
