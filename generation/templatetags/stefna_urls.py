"""`{% object_url %}`: the address of a route taking one UUID, without a `reverse()` per call.

A history page renders ~24 image tiles and 12 generations, each with a handful of
per-object links (share, visibility, delete, details…): ~250 `reverse()` calls, a large
share of the page's CPU (bench/README.md). Every link of one route differs only in the
UUID, so the route is reversed once per request with a placeholder UUID and each link
is that address with the object's UUID put in. The result is exactly what
`{% url name pk %}` gives.

The template is cached on the request, not the process: the script prefix and the
URLconf can differ per request (SCRIPT_NAME, `request.urlconf`), never within one.

The address comes back marked safe when HTML escaping would not change it (no `&`,
quotes or angle brackets in the route, which is always so for Stefna's; a UUID never has
them), so the seven links of an image tile are not escaped again at every use.
"""

from __future__ import annotations

import uuid
from typing import Any

from django import template
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

register = template.Library()

# Never a real object's id (uuid4 ids have version bits set); 36 characters like any UUID.
_PLACEHOLDER = str(uuid.UUID(int=0))
_CACHE_ATTRIBUTE = "_stefna_object_url_templates"


def _template_for(request: Any, name: str) -> tuple[str, str, bool] | None:
    """The route's address split around the placeholder, and whether it needs no HTML
    escaping; None if it cannot be split."""
    cache: dict[str, tuple[str, str, bool] | None] | None = getattr(request, _CACHE_ATTRIBUTE, None)
    if cache is None:
        cache = {}
        setattr(request, _CACHE_ATTRIBUTE, cache)
    if name not in cache:
        address = reverse(name, args=[_PLACEHOLDER])
        # Only a route whose address holds the UUID once, verbatim, can be filled in.
        parts = address.split(_PLACEHOLDER)
        cache[name] = (parts[0], parts[1], escape(address) == address) if len(parts) == 2 else None
    return cache[name]


@register.simple_tag(takes_context=True)
def object_url(context: template.Context, name: str, pk: object) -> str | SafeString:
    """`{% url name pk %}` for a route whose one argument is a UUID (`<uuid:…>`)."""
    request = context.get("request")
    if request is not None and isinstance(pk, uuid.UUID):
        split = _template_for(request, name)
        if split is not None:
            prefix, suffix, html_safe = split
            address = f"{prefix}{pk}{suffix}"
            return mark_safe(address) if html_safe else address  # noqa: S308 (escaping would not change it)
    return reverse(name, args=[pk])
