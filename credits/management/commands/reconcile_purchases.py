"""`python manage.py reconcile_purchases`: ask Stripe about pending purchases (the upkeep).

The worker runs the same service every few minutes; this command is for cron or a
one-off check after a webhook outage.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from credits.payments.purchases import purchase_reconcile_pending


class Command(BaseCommand):
    help = "Reconcile pending Stripe purchases: grant the paid ones, expire the expired ones."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--limit", type=int, default=200, help="Most purchases to check in one run.")

    def handle(self, *args: Any, limit: int, **options: Any) -> None:
        counts = purchase_reconcile_pending(limit=limit)
        summary = ", ".join(f"{outcome}: {count}" for outcome, count in sorted(counts.items())) or "nothing pending"
        self.stdout.write(f"Reconciled purchases ({summary}).")
