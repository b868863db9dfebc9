from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from stefna.accounts.services import api_token_create, user_get_or_create
from stefna.errors import InvalidInput


class Command(BaseCommand):
    help = "Create an API token for EMAIL (creating the account if needed). Prints the token on the last line."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("email")
        parser.add_argument("--name", default="cli")

    def handle(self, *args, email: str, name: str, **options):  # type: ignore[no-untyped-def]
        try:
            user, created = user_get_or_create(email=email)
        except InvalidInput as exc:
            raise CommandError(exc.message) from exc
        _, plain = api_token_create(user=user, name=name)
        if created:
            self.stdout.write(f"Created account {user.email}")
        self.stdout.write(f"API token for {user.email} (shown once):")
        self.stdout.write(plain)
