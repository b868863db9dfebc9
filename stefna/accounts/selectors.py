from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from .models import ApiToken, User


def api_tokens_for(*, user: User) -> QuerySet[ApiToken]:
    return ApiToken.objects.filter(user=user).order_by("-created_at")


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
    }
    return export


def _purchases(user: User) -> list[dict[str, Any]]:
    """Purchases, once the credits app has them (a separate branch adds the model)."""
    from django.apps import apps

    try:
        # By name: the model exists only once the payments branch is merged.
        purchase_model: Any = apps.get_model("credits", "Purchase")  # type: ignore[misc]
    except LookupError:
        return []
    rows = purchase_model.objects.filter(user=user).order_by("created_at")
    fields = [field.attname for field in purchase_model._meta.concrete_fields if field.attname != "user_id"]
    return [{name: _plain(getattr(row, name)) for name in fields} for row in rows]


def _plain(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def user_by_email(*, email: str) -> User | None:
    """The active account for `email` (stored lower-case), or None."""
    return User.objects.filter(email=email.strip().lower(), is_active=True).first()
