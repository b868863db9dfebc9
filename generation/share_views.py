"""Share pages: /i/<share_id>, a public image shown large, with the tags chat apps and
social networks read to unfurl a link (Open Graph, Twitter cards).

Images that are private, hidden by staff, deleted or never existed answer the 404 page,
in the visitor's language. The owner also sees their private image's page, marked as
visible to them only, so they can check it before making it public.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import urlsplit

from django.http import Http404, HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import urlencode
from django.utils.text import slugify
from django.views.decorators.http import require_safe

from presets.selectors import preset_by_slug
from stefna.errors import NotFound
from stefna.requests import signed_in_user
from stefna.social_meta import social_meta

from . import previews, selectors, storage


def _download_name(url: str, *, preset_name: str, share_id: str) -> str:
    """ "stefna-oil-painting-3OK9pR.png" for the Download button, not the storage's hash name.
    Browsers honour it for same-origin files (local storage, our /media/ address)."""
    extension = PurePosixPath(urlsplit(url).path).suffix.lower()
    stem = "-".join(part for part in ("stefna", slugify(preset_name), share_id[:6]) if part)
    return stem + (extension if extension in {".png", ".jpg", ".jpeg", ".webp", ".avif"} else "")


# GET and HEAD: link checkers and some chat apps' unfurlers ask HEAD before they fetch.
@require_safe
def share_page(request: HttpRequest, share_id: str) -> HttpResponse:
    try:
        media = selectors.media_get_by_share_id(share_id=share_id, viewer=signed_in_user(request))
    except NotFound as exc:
        raise Http404(exc.message) from exc
    generation = media.generation
    preset = preset_by_slug(slug=generation.preset_slug)
    preset_name = preset.display_name if preset else (generation.preset_name or generation.preset_slug)
    studio = f"{reverse('studio')}?{urlencode({'preset': generation.preset_slug})}"
    if request.user.is_authenticated:
        make_your_own = studio
    else:
        make_your_own = f"{reverse('accounts:sign_in')}?{urlencode({'next': studio})}"
    public = storage.media_is_public(media)
    # A public image unfurls with its small preview; the owner's own view of a private one
    # names only the full image's checking address, which answers no one else.
    preview = previews.share_preview(media) if public else None
    social = social_meta(
        request,
        path=reverse("share_page", args=[media.share_id]),
        image_url=preview.url if preview else media.url,
        image_size=(preview.width, preview.height) if preview else (media.width, media.height),
        image_type=preview.content_type if preview else (media.content_type or "image/png"),
        og_type="article",
        robots="" if public else "noindex",
    )
    context = {
        "media": media,
        "generation": generation,
        "preset_name": preset_name,
        "author": media.user.public_name,
        "download_name": _download_name(media.url, preset_name=preset_name, share_id=media.share_id),
        "absolute_page_url": social.page_url,
        "make_your_own_url": make_your_own,
        "is_owner": media.user_id == getattr(request.user, "pk", None),
        "social": social,
    }
    return render(request, "generation/share.html", context)


@require_safe
def legacy_share_page(request: HttpRequest, media_id: str) -> HttpResponse:
    """/i/<media uuid>/, the first share address: links already out there keep working."""
    try:
        media = selectors.media_get_shared(media_id=media_id, viewer=signed_in_user(request))
    except NotFound as exc:
        raise Http404(exc.message) from exc
    return HttpResponsePermanentRedirect(reverse("share_page", args=[media.share_id]))
