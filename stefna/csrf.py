"""The page a form gets when its CSRF token no longer matches (settings.CSRF_FAILURE_VIEW).

Nearly always a stale tab, not an attack: a page left open across a sign-in or sign-out
elsewhere (each rotates the token), or past a session's end. Django's own page is bare,
English-first and speaks of cookies and referers; ours is templates/403_csrf.html in the
site's layout and the visitor's language, and leads back to the page the form was on,
which a fresh load gives a valid token again.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    if request.headers.get("HX-Request") == "true":
        # An in-page action (Make public, Delete image...): htmx swaps nothing for a 403,
        # so the click did nothing at all. Reload the page instead (a fresh token) and
        # say why on it.
        messages.warning(
            request,
            f"{_('This page was out of date')}. "
            + _(
                "It was open for a while, or you signed in or out in another tab, so we couldn't accept "
                "what you sent. Nothing was changed: load the page again and send it once more."
            ),
        )
        response = HttpResponse(status=403)
        response["HX-Refresh"] = "true"
        return response
    # The Referer is the form's page; anything off this site (a cross-site post, which is
    # what the check is for) is never offered as a link.
    referer = request.headers.get("Referer") or ""
    back_url = ""
    if url_has_allowed_host_and_scheme(referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        parts = urlsplit(referer)
        back_url = f"{parts.path or '/'}{'?' + parts.query if parts.query else ''}"
    return render(request, "403_csrf.html", {"back_url": back_url}, status=403)
