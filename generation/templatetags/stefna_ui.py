"""Small presentation helpers for Stefna's templates."""

from __future__ import annotations

import unicodedata

from django import template
from django.template.defaultfilters import truncatechars

from presets.models import Preset

register = template.Library()


@register.filter
def kind_label(kind: str) -> str:
    """A generation stores its preset's kind as a plain string; show its human name."""
    try:
        return str(Preset.Kind(kind).label)
    except ValueError:
        return kind.replace("_", " ").capitalize()


@register.filter(is_safe=True)
def shorten(value: str, length: int) -> str:
    """`truncatechars`, without its cost when the text already fits (nearly every prompt).

    Django's filter walks the text a character at a time through a lazy Truncator, about
    20 µs a call, and the history page makes one call per card and one per image. Text
    no longer than `length` (after the same NFC normalisation) comes back as Django's
    filter returns it; longer text goes to that filter.
    """
    text = unicodedata.normalize("NFC", str(value))
    if isinstance(length, int) and len(text) <= length:
        return text
    return truncatechars(value, length)
