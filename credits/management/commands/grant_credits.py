"""`python manage.py grant_credits EMAIL AMOUNT`: add credits through the ledger."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from credits import ledger
from credits.selectors import balance_of

# A typo guard, not a business rule: nobody means to grant a million credits at once.
MAX_GRANT = 100_000


class Command(BaseCommand):
    help = "Grant credits to a user (through the ledger) and print the new balance."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("email", help="The user's email address.")
        parser.add_argument("amount", help=f"Whole number of credits to add, 1 to {MAX_GRANT}.")
        parser.add_argument("--note", default="", help="Why (kept on the ledger entry).")

    def handle(self, *args: Any, email: str, amount: str, note: str, **options: Any) -> None:
        try:
            credits = int(amount.strip())
        except ValueError:
            raise CommandError(f"AMOUNT must be a whole number of credits, not {amount!r}.")
        if not 1 <= credits <= MAX_GRANT:
            raise CommandError(f"AMOUNT must be between 1 and {MAX_GRANT}; got {credits}.")
        user = get_user_model().objects.filter(email__iexact=email.strip()).first()
        if user is None:
            raise CommandError(f"No user with the email {email!r}. (create_api_token EMAIL creates one.)")
        # The grant applies today's allowance first anyway; doing it here lets us say so,
        # so a balance higher than "old + amount" is not a surprise.
        allowance = ledger.ensure_daily_allowance(user=user)
        if allowance is not None:
            self.stdout.write(f"Applied today's daily allowance first: +{allowance.amount}.")
        ledger.grant(user=user, amount=credits, note=note or "grant_credits command")
        self.stdout.write(f"Granted {credits} credits to {user.email}. New balance: {balance_of(user=user)}")
