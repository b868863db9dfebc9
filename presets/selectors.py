"""Reads for presets."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import Preset


def active_presets() -> QuerySet[Preset]:
    """The styles users can pick, in the picker's order (one query; uses preset_active_order)."""
    return Preset.objects.filter(is_active=True).order_by("sort_order", "name", "pk")


def preset_by_slug(*, slug: str) -> Preset | None:
    """The preset a generation was made with (active or not), for its name in the visitor's language."""
    return Preset.objects.filter(slug=slug).first()


def active_preset_by_slug(slug: str) -> Preset | None:
    """One style users can pick, by its slug; None when there is none (or it is retired)."""
    slug = (slug or "").strip()
    if "\x00" in slug:
        return None  # no slug holds a NUL, and PostgreSQL refuses one in a query (a 500)
    return active_presets().filter(slug=slug).first()
