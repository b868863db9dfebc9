"""`GET /api/presets`: the active styles, in the order the picker shows them. Public."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Schema

from stefna.api_support import errors, limit_public

from .selectors import active_presets

router = Router(tags=["presets"])


class PresetOut(Schema):
    slug: str
    name: str
    kind: str
    description: str
    requires_prompt: bool
    # Additive to CONTRACT's fields: false for text-to-image styles, which need no `image`.
    needs_photo: bool
    num_images: int
    cost: int
    thumbnail_url: str


def _absolute(request: HttpRequest, url: str) -> str:
    # Site-relative static paths mean nothing to an API client; Cloudinary/S3 ones are absolute.
    return request.build_absolute_uri(url) if url.startswith("/") and not url.startswith("//") else url


@router.get(
    "/presets",
    auth=None,
    response={200: list[PresetOut], **errors(429)},
    summary="Active presets, in display order (no sign-in; limited per IP)",
)
def preset_list(request: HttpRequest) -> list[dict]:
    limit_public(request)
    # One query; `cost` and `thumbnail_url` are properties of the row (no extra reads).
    presets = active_presets()
    return [
        {
            "slug": preset.slug,
            # In the request's Accept-Language; the slug is the stable id.
            "name": preset.display_name,
            "kind": preset.kind,
            "description": preset.display_description,
            "requires_prompt": preset.requires_prompt,
            "needs_photo": preset.needs_photo,
            "num_images": preset.num_images,
            "cost": preset.cost,
            "thumbnail_url": _absolute(request, preset.thumbnail_url),
        }
        for preset in presets
    ]
