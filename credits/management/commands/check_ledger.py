"""`python manage.py check_ledger`: prove the credit ledger adds up; exit 1 when it does not."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from credits.reconcile import find_ledger_problems, ledger_summary


class Command(BaseCommand):
    help = (
        "Check that every balance equals the sum of its entries, every running balance is right, "
        "every finished generation was captured or refunded exactly once (both buckets), and every "
        "purchase was credited exactly once. Exits 1 on any problem."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        problems = find_ledger_problems()
        if problems:
            for problem in problems:
                self.stderr.write(problem)
            self.stderr.write(self.style.ERROR(f"{len(problems)} ledger problem(s) found."))
            raise SystemExit(1)
        summary = ledger_summary()
        self.stdout.write(
            self.style.SUCCESS(
                f"Ledger is clean: {summary['users']} wallets, {summary['entries']} entries, "
                f"{summary['generations']} charged generations and {summary['purchases']} purchases checked."
            )
        )
