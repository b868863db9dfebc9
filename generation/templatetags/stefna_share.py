"""`{% share_url media %}`: an image's share page address, /i/<share_id>.

Reversed once per request (feed and history pages show dozens of tiles), then the id
is put in; the same text `{% url 'share_page' media.share_id %}` gives.
"""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

register = template.Library()

# 22 characters like every share id; never a real one (real ones are random).
_PLACEHOLDER = "S" * 22
_CACHE_ATTRIBUTE = "_stefna_share_url_template"


@register.simple_tag(takes_context=True)
def share_url(context: dict[str, Any], media: Any) -> str:
    request = context.get("request")
    prefix_suffix = getattr(request, _CACHE_ATTRIBUTE, None) if request is not None else None
    if prefix_suffix is None:
        prefix_suffix = tuple(reverse("share_page", args=[_PLACEHOLDER]).split(_PLACEHOLDER))
        if request is not None:
            setattr(request, _CACHE_ATTRIBUTE, prefix_suffix)
    prefix, suffix = prefix_suffix
    return f"{prefix}{media.share_id}{suffix}"
