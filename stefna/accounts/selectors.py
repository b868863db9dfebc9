from __future__ import annotations

from django.db.models import QuerySet

from .models import ApiToken, User


def api_tokens_for(*, user: User) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).order_by("-created_at")


def user_by_email(*, email: str) -> User | None:
    """The active account for `email` (stored lower-case), or None."""
    return User.objects.filter(email=email.strip().lower(), is_active=True).first()
