"""Reads for presets."""

from __future__ import annotations

from django.db.models import QuerySet

from .models import Preset


def active_presets() -> QuerySet[Preset]:
    """The styles users can pick, in the picker's order (one query; uses preset_active_order)."""
    return Preset.objects.filter(is_active=True).order_by("sort_order", "name", "pk")
