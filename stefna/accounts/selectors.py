from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from .models import ApiToken, User


def api_tokens_for(*, user: User) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).order_by("-created_at")


def still_signed_in(request: HttpRequest) -> Callable[[], bool]:
    """A check, to run again later, that what signed `request` in still holds.

    For answers that outlive their request (a live status stream stays open for
    minutes): the API token it came with is not revoked, or its session was not ended
    (signed out, expired, or replaced by another sign-in), and the account is still
    open. The check reads only what it names, so it may run on another thread.
    """
    user_id = request.user.pk
    token_hash: str | None = getattr(request, "api_token_hash", None)
    if token_hash is not None:
        return lambda: ApiToken.objects.filter(
            token_hash=token_hash, revoked_at__isnull=True, user__is_active=True
        ).exists()
    session_key = request.session.session_key
    engine = import_module(settings.SESSION_ENGINE)

    def session_holds() -> bool:
        if session_key is None or user_id is None:
            return False
        data = engine.SessionStore(session_key).load()
        return str(data.get(SESSION_KEY)) == str(user_id) and User.objects.filter(pk=user_id, is_active=True).exists()

    return session_holds


def account_export(*, user: User, absolute: Callable[[str], str] = str) -> dict[str, Any]:
    """Everything Stefna holds about `user`, and nothing about anyone else (GET /api/me/export).

    Images and photos appear with the addresses their owner can open (our checking
    views); `absolute` turns a site-relative address into a full URL.
    """
    from credits.models import CreditEntry, Wallet
    from generation.models import Generation, Media

    def address(url: str) -> str:
        return absolute(url) if url.startswith("/") else url

    def when(value: Any) -> str | None:
        return value.isoformat() if value else None

    generations = Generation.objects.filter(user=user).order_by("created_at", "id")
    media = Media.objects.filter(user=user).order_by("created_at", "id")
    entries = CreditEntry.objects.filter(user=user).order_by("created_at", "id")
    wallet = Wallet.objects.filter(user=user).first()
    export: dict[str, Any] = {
        "format": "stefna-export-1",
        "exported_at": timezone.now().isoformat(),
        "profile": {
            "id": str(user.pk),
            "email": user.email,
            "display_name": user.display_name,
            "language": user.language,
            "date_joined": when(user.date_joined),
            "last_login": when(user.last_login),
            "balance": wallet.balance if wallet else 0,
        },
        "generations": [
            {
                "id": str(g.pk),
                "preset": g.preset_slug,
                "kind": g.kind,
                "status": g.status,
                "prompt": g.prompt,
                "prompt_sent": g.prompt_sent,
                "cost": g.cost,
                "is_public": g.is_public,
                "photo_url": address(f"{settings.MEDIA_URL}{g.source_image.name}") if g.source_image else None,
                "error": {"code": g.error_code, "message": g.error_message} if g.error_code else None,
                "created_at": when(g.created_at),
                "completed_at": when(g.completed_at),
                "hidden_from_history": g.deleted_at is not None,
            }
            for g in generations
        ],
        "images": [
            {
                "id": str(m.pk),
                "generation_id": str(m.generation_id),
                "url": address(m.url),
                "model": m.model,
                "width": m.width,
                "height": m.height,
                "is_public": m.is_public,
                "persisted": m.persisted,
                "created_at": when(m.created_at),
            }
            for m in media
        ],
        "ledger": [
            {
                "id": entry.pk,
                "amount": entry.amount,
                "reason": entry.reason,
                "generation_id": str(entry.generation_id) if entry.generation_id else None,
                "balance_after": entry.balance_after,
                "note": entry.note,
                "created_at": when(entry.created_at),
            }
            for entry in entries
        ],
        "api_tokens": [
            {
                "name": token.name,
                "prefix": token.prefix,
                "created_at": when(token.created_at),
                "last_used_at": when(token.last_used_at),
                "revoked_at": when(token.revoked_at),
            }
            for token in api_tokens_for(user=user)
        ],
        "purchases": _purchases(user),
        "sign_in_accounts": _sign_ins(user),
    }
    return export


# What a purchase says to its buyer (with its pack's slug): the contract's Purchase and the
# refund figures. Not the staff's attention flag and note, nor Stripe's session and
# checkout addresses.
_PURCHASE_FIELDS = (
    "id",
    "email",
    "credits",
    "price",
    "currency",
    "status",
    "provider",
    "receipt_url",
    "amount_refunded",
    "credits_taken_back",
    "credits_already_spent",
    "created_at",
    "paid_at",
)


def _purchases(user: User) -> list[dict[str, Any]]:
    from credits.models import Purchase

    rows = Purchase.objects.filter(user=user).select_related("pack").order_by("created_at")
    return [{"pack": row.pack.slug, **{name: _plain(getattr(row, name)) for name in _PURCHASE_FIELDS}} for row in rows]


def _sign_ins(user: User) -> list[dict[str, Any]]:
    """Accounts elsewhere that sign in here (Google), with what the provider told us."""
    from allauth.socialaccount.models import SocialAccount

    return [
        {
            "provider": account.provider,
            "uid": account.uid,
            "date_joined": _plain(account.date_joined),
            "last_login": _plain(account.last_login),
            "extra_data": account.extra_data,
        }
        for account in SocialAccount.objects.filter(user=user).order_by("date_joined")
    ]


def _plain(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def user_by_email(*, email: str) -> User | None:
    """The active account for `email` (stored lower-case), or None."""
    return User.objects.filter(email=email.strip().lower(), is_active=True).first()
