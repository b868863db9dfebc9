"""Serving stored images, with ownership checked on every request.

`/media/<name>` (local files, sent by Stefna or, behind nginx with MEDIA_ACCEL_REDIRECT, by
nginx once Stefna has said yes; or an S3-compatible bucket's, redirected to a presigned URL
that expires) and `/images/<Cloudinary public id>` answer only what the asker may see (see
generation/storage.py): a public result or a style's thumbnail to anyone, a private result
or any source photo only to its owner and staff. Everything else is a 404, the same answer as for
a name that does not exist, so probing tells nothing.

Public answers may be cached for an hour by browsers and CDNs (not "immutable": a
result made private again moves to a new name, and the old one must age out).
Private answers are `private, no-store`.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from django.conf import settings
from django.core.exceptions import SuspiciousFileOperation
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.utils._os import safe_join
from django.views.static import serve

from generation import storage
from generation.services import media_preview_ready
from presets.models import THUMBNAILS_FOLDER, Preset

if TYPE_CHECKING:
    from generation.models import Media


def _cache_headers(response: HttpResponseBase, *, public: bool) -> HttpResponseBase:
    if public:
        response["Cache-Control"] = f"public, max-age={storage.PUBLIC_CACHE_SECONDS}"
    else:
        response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    response["Vary"] = "Cookie, Authorization"
    return response


def _viewer(request: HttpRequest) -> Any:
    """The signed-in user, or the owner of a valid API token (API clients fetch their images)."""
    if request.user.is_authenticated:
        return request.user
    header = request.META.get("HTTP_AUTHORIZATION", "")
    if header.lower().startswith("bearer "):
        from stefna.accounts.services import api_token_authenticate

        return api_token_authenticate(header[7:].strip())
    return None


def _public_or_404(request: HttpRequest, media: Media) -> bool:
    """Whether `media` is public; Http404 unless the asker may see it.

    A public image is answered without reading the session or the user: a feed page
    shows twenty of them, and only a private one needs to know who is asking.
    """
    public = storage.media_is_public(media)
    if not public and not storage.may_view_media(_viewer(request), media):
        raise Http404
    return public


def serve_media(request: HttpRequest, path: str) -> HttpResponseBase:
    folder = path.split("/", 1)[0]
    if folder == storage.SOURCES_FOLDER or folder == "IMAGES_UPLOAD":  # IMAGES_UPLOAD: before the rename
        generation = storage.generation_for_source(path)
        if generation is None or not storage.may_view_generation_source(_viewer(request), generation):
            raise Http404
        public = False
    elif folder in (storage.RESULTS_FOLDER, storage.OFFLINE_FOLDER):
        media = storage.media_for_name(path)
        if media is None:
            raise Http404
        public = _public_or_404(request, media)
    elif folder == storage.PREVIEWS_FOLDER:
        _share_preview_or_404(path)
        public = True
    elif folder == THUMBNAILS_FOLDER:
        # A style's uploaded thumbnail (GET /api/presets' thumbnail_url): public, but only
        # a file a preset names, never whatever else lies in the folder.
        if not Preset.objects.filter(thumbnail=path).exists():
            raise Http404
        public = True
    else:
        raise Http404  # nothing else under MEDIA_ROOT is for the web (health probes, provider state)
    presigned = storage.presigned_address(path, seconds=storage.delivery_seconds(public=public))
    if presigned is not None:
        # A bucket: the file is fetched from there, by a URL that expires.
        return _cache_headers(HttpResponseRedirect(presigned), public=public)
    if settings.MEDIA_ACCEL_REDIRECT:
        return _cache_headers(_handed_to_nginx(path), public=public)
    # MEDIA_ROOT is read per request, not when the URLconf loads, so a changed
    # setting (tests give each test its own folder) is always honoured.
    response = serve(request, path, document_root=str(settings.MEDIA_ROOT))
    return _cache_headers(response, public=public)


def _share_preview_or_404(path: str) -> None:
    """A public image's share preview (generation/previews.py), made on first use. Only
    while the image is public, to anyone, its owner included: a private image has no
    preview, so nothing of it can be reached at a preview address."""
    key = storage.key_of_preview(path)
    media = storage.media_for_name(key) if key else None
    if media is None or not storage.media_is_public(media):
        raise Http404
    if not media_preview_ready(media=media):
        raise Http404


def _handed_to_nginx(path: str) -> HttpResponse:
    """An empty answer telling nginx to send MEDIA_ROOT/`path` from its internal location.

    nginx keeps this answer's Content-Type and Cache-Control and adds the file's length,
    Last-Modified and ETag; the location adds what it does not keep (deploy/nginx.conf).
    A missing file is our 404, as without nginx, not nginx's own page.
    """
    try:
        found = Path(safe_join(str(settings.MEDIA_ROOT), path)).is_file()
    except SuspiciousFileOperation:
        found = False
    if not found:
        raise Http404
    content_type, _ = mimetypes.guess_type(path)
    response = HttpResponse(content_type=content_type or "application/octet-stream")
    # nginx decodes the URI it is given, so a name is sent percent-encoded.
    response["X-Accel-Redirect"] = settings.MEDIA_ACCEL_REDIRECT + quote(path)
    return response


def serve_cloudinary_image(request: HttpRequest, public_id: str) -> HttpResponseBase:
    """A Cloudinary result: redirect to its signed delivery URL (public) or to a
    download URL that expires within minutes (owner and staff)."""
    media = storage.media_for_cloudinary(public_id)
    if media is None:
        raise Http404
    public = _public_or_404(request, media)
    response = HttpResponseRedirect(storage.cloudinary_redirect(media, public=public))
    return _cache_headers(response, public=public)
