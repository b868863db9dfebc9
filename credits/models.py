"""Credits: an append-only ledger plus a cached balance.

`credits/ledger.py` is the only code that writes either table.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Wallet(models.Model):
    """A user's spendable balance, cached from the ledger.

    `balance` always equals the sum of the user's entries: it changes only in the
    same transaction as the entry that explains it, while the ledger holds this row's
    lock (SELECT … FOR UPDATE). `check_ledger` proves the two agree.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True)
    balance = models.IntegerField(default=0)
    # The UTC day whose allowance was last applied; the allowance check is a cheap
    # comparison on this field, not a ledger query.
    allowance_day = models.DateField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(balance__gte=0), name="wallet_balance_not_negative")]

    def __str__(self) -> str:
        return f"{self.user}: {self.balance}"


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
    balance_after = models.IntegerField()
    allowance_day = models.DateField(null=True, blank=True)
    note = models.CharField(max_length=200, blank=True)
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
            models.CheckConstraint(condition=Q(balance_after__gte=0), name="credit_balance_after_not_negative"),
            # Generation entries name their generation and charge; the others name neither.
            models.CheckConstraint(
                condition=(
                    Q(
                        reason__in=["reserve", "capture", "refund"],
                        generation__isnull=False,
                        charge_number__gte=1,
                    )
                    | Q(
                        reason__in=["daily_allowance", "grant", "adjust"],
                        generation__isnull=True,
                        charge_number__isnull=True,
                    )
                ),
                name="credit_generation_link_matches_reason",
            ),
            # The sign of every amount follows from its reason, so a bug cannot, say,
            # "refund" a negative amount.
            models.CheckConstraint(
                condition=(
                    Q(reason="reserve", amount__lt=0)
                    | Q(reason="capture", amount=0)
                    | Q(reason="refund", amount__gt=0)
                    | Q(reason="daily_allowance", amount__gt=0, allowance_day__isnull=False)
                    | Q(reason="grant", amount__gt=0)
                    | (Q(reason="adjust") & ~Q(amount=0))
                ),
                name="credit_amount_sign_matches_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.amount:+d} {self.reason}"
