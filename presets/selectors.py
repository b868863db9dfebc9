"""Reads for presets."""

from __future__ import annotations

import time

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


# slug → preset with its names, kept a minute per process (`preset_names_by_slug`).
_NAMES: dict[str, tuple[float, dict[str, Preset]]] = {}
_NAMES_SECONDS = 60.0


def preset_names_by_slug() -> dict[str, Preset]:
    """Every preset's names (`name`, `name_id`) by slug, kept a minute per process: the
    pages that translate a generation's stored style name ask once per card, and this is
    one query however many cards a page has. A rename shows within the minute."""
    cached = _NAMES.get("all")
    now = time.monotonic()
    if cached is None or now - cached[0] > _NAMES_SECONDS:
        presets = {preset.slug: preset for preset in Preset.objects.only("slug", "name", "name_id")}
        _NAMES["all"] = cached = (now, presets)
    return cached[1]


def forget_preset_names() -> None:
    """Drop the kept names (tests: each brings presets of its own)."""
    _NAMES.clear()
