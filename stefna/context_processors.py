from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from credits.selectors import HeaderQuota, header_quota_for


def site(request: HttpRequest) -> dict[str, Any]:
    """Site-wide template values. The header's quota is read lazily, only if a template shows it."""
    context: dict[str, Any] = {
        "site_name": settings.SITE_NAME,
        "offline_mode": settings.OFFLINE_MODE,
        "generation_cost": settings.GENERATION_COST,
        "daily_credits": settings.DAILY_CREDITS,
    }
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        cache: dict[str, HeaderQuota] = {}

        def header_quota() -> HeaderQuota:
            if "quota" not in cache:
                cache["quota"] = header_quota_for(user=user)
            return cache["quota"]

        context["header_quota"] = header_quota
    return context
