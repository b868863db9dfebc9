"""Small presentation helpers for Stefna's templates."""

from __future__ import annotations

from django import template

from presets.models import Preset

register = template.Library()


@register.filter
def kind_label(kind: str) -> str:
    """A generation stores its preset's kind as a plain string; show its human name."""
    try:
        return str(Preset.Kind(kind).label)
    except ValueError:
        return kind.replace("_", " ").capitalize()
