"""Credits: an append-only ledger plus a cached balance.

`credits/ledger.py` is the only code that writes either table.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class Wallet(models.Model):
    """A user's spendable balance, cached from the ledger.

    `balance` always equals the sum of the user's entries: it changes only in the
    same transaction as the entry that explains it, through a conditional UPDATE
    that doubles as the row lock. `check_ledger` proves the two agree.
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
    class Reason(models.TextChoices):
        DAILY_ALLOWANCE = "daily_allowance", "Daily allowance"
        RESERVE = "reserve", "Reserved for a generation"
        CAPTURE = "capture", "Generation delivered"
        REFUND = "refund", "Refund"
        GRANT = "grant", "Grant"
        ADJUST = "adjust", "Adjustment"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="credit_entries")
    amount = models.IntegerField(help_text="Signed: negative spends, positive adds.")
    reason = models.CharField(max_length=20, choices=Reason.choices)
    # PROTECT: a generation with money attached is never deleted, only hidden.
    generation = models.ForeignKey(
        "generation.Generation", null=True, blank=True, on_delete=models.PROTECT, related_name="credit_entries"
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
            # The database, not just the code, guarantees a generation is reserved once
            # and settled (captured or refunded) once, never both.
            models.UniqueConstraint(
                fields=["generation"], condition=Q(reason="reserve"), name="credit_one_reserve_per_generation"
            ),
            models.UniqueConstraint(
                fields=["generation"],
                condition=Q(reason__in=["capture", "refund"]),
                name="credit_one_settlement_per_generation",
            ),
            models.UniqueConstraint(
                fields=["user", "allowance_day"],
                condition=Q(reason="daily_allowance"),
                name="credit_one_allowance_per_day",
            ),
            models.CheckConstraint(condition=Q(balance_after__gte=0), name="credit_balance_after_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.amount:+d} {self.reason}"
