"""Serving locally stored media (development, offline mode, single-machine installs)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.views.static import serve


def serve_media(request: HttpRequest, path: str) -> HttpResponseBase:
    # MEDIA_ROOT is read per request, not when the URLconf loads, so a changed
    # setting (tests give each test its own folder) is always honoured.
    response = serve(request, path, document_root=str(settings.MEDIA_ROOT))
    # Source photos and results live under unguessable UUID names and never change.
    response["Cache-Control"] = "public, max-age=31536000, immutable"
    response["X-Content-Type-Options"] = "nosniff"
    return response
