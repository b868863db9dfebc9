"""Accounts: email-only users, one-time sign-in codes and personal API tokens.

Secrets (codes, tokens) are stored only as hashes; the plain value is shown once.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from django.conf import settings
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.db import models


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra: object) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: object) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractUser):
    """A person. Signs in with an emailed code; has no username."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    username = None  # type: ignore[assignment]
    first_name = None  # type: ignore[assignment]
    last_name = None  # type: ignore[assignment]
    email = models.EmailField("email address", unique=True)
    display_name = models.CharField(max_length=60, blank=True)
    # The header switcher's choice; empty until the person picks one (then the browser's
    # Accept-Language decides). Emails the worker sends outside a request use it too.
    # db_default too: while `migrate` adds a column, the previous version still serves and inserts
    # rows without it (docs/deploy.md, Upgrades; tests/deploy/test_migrations_upgrade.py).
    language = models.CharField(max_length=8, blank=True, choices=settings.LANGUAGES, default="", db_default="")

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    objects = UserManager()  # type: ignore[misc,assignment]  # email, not username

    def __str__(self) -> str:
        return self.email

    @property
    def public_name(self) -> str:
        """What other people see: the display name the person chose, else a neutral handle.

        Never any part of the email: a local part is often a full name, and with a
        well-known domain it is the whole address.
        """
        return self.display_name or self.default_handle

    @property
    def default_handle(self) -> str:
        """A stable, neutral handle made from the account's random id ("artist-4f1c9a")."""
        return f"artist-{self.pk.hex[:6]}" if self.pk else "artist"


class LoginCode(models.Model):
    """A 6-digit sign-in code (the design documents' `auth_otps`).

    Only an HMAC of the code is kept. A code dies when used, after 5 wrong tries,
    or 10 minutes after it was sent, whichever comes first.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(db_index=True)
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    failed_attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "auth_otps"
        indexes = [models.Index(fields=["email", "-created_at"], name="otp_email_recent")]

    def __str__(self) -> str:
        return f"code for {self.email}"


class ApiToken(models.Model):
    """A personal API token. `prefix` is shown in lists so a user can tell them apart."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=80, blank=True)
    prefix = models.CharField(max_length=12)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The one-time key of the account page's "Create token" form: a double click sent it
    # twice and made two tokens, the first never shown. One token per key (api_token_create).
    create_key = models.UUIDField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "create_key"],
                condition=models.Q(create_key__isnull=False),
                name="api_token_one_per_create_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class RateCounter(models.Model):
    """One rate-limit window's count (stefna/ratelimit.py writes it with one upsert).

    Here rather than in Django's database cache because the count must be raised
    atomically by the database: the cache's incr reads, then writes.
    """

    key = models.CharField(max_length=250, primary_key=True)
    count = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        db_table = "stefna_rate_counters"

    def __str__(self) -> str:
        return f"{self.key}={self.count}"
