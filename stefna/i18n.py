"""Which language a request speaks, and the header's language switcher.

Order for pages: the account's saved choice, else the visitor's cookie (set by the
switcher), else Accept-Language, else English. The JSON API follows Accept-Language
alone, so a script gets the language it asks for whoever is signed in; API `code`s
never change with it. Any code we do not ship falls back to English.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation.trans_real import parse_accept_lang_header
from django.views.decorators.http import require_POST

from generation.storage import CLOUDINARY_PATH
from stefna.accounts.services import user_set_language
from stefna.requests import signed_in_user


def supported_language(code: str | None) -> str | None:
    """The shipped language `code` names (`id-ID` → `id`), or None."""
    if not code:
        return None
    try:
        return translation.get_supported_language_variant(code.strip().lower())
    except LookupError:
        return None


def language_from_accept_header(header: str) -> str:
    for code, _quality in parse_accept_lang_header(header or ""):
        if code == "*":
            break
        language = supported_language(code)
        if language:
            return language
    return settings.LANGUAGE_CODE


def language_for_user(user: Any) -> str:
    """The language to write to `user` in (emails sent by the worker, outside a request)."""
    return supported_language(getattr(user, "language", "")) or settings.LANGUAGE_CODE


def _activate(request: HttpRequest, language: str) -> None:
    translation.activate(language)
    request.LANGUAGE_CODE = language  # type: ignore[attr-defined]


class UserLanguageMiddleware:
    """Runs after LocaleMiddleware and AuthenticationMiddleware (see settings.MIDDLEWARE)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        # Image routes answer with bytes in no language. Reading the account's language
        # there would load the session and the user for every image, and a public one
        # needs neither (stefna/media.py): a feed page shows twenty.
        prefixes = (settings.MEDIA_URL, f"/{CLOUDINARY_PATH}")
        self.image_prefixes = tuple(prefix for prefix in prefixes if prefix.startswith("/"))

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith("/api/"):
            _activate(request, language_from_accept_header(request.headers.get("Accept-Language", "")))
        elif not request.path_info.startswith(self.image_prefixes):
            user = getattr(request, "user", None)
            saved = supported_language(getattr(user, "language", "")) if user and user.is_authenticated else None
            if saved:
                _activate(request, saved)
        return self.get_response(request)


def context(request: HttpRequest) -> dict[str, Any]:
    """The switcher's choices, with the active one marked."""
    current = translation.get_language() or settings.LANGUAGE_CODE
    return {
        "language_choices": [
            {"code": code, "name": name, "current": code == current} for code, name in settings.LANGUAGES
        ],
    }


@require_POST
def set_language(request: HttpRequest) -> HttpResponse:
    """The header's switcher: remembered in a cookie, and on the account when signed in.

    An unknown code falls back to English rather than failing: the visitor asked for a
    language change, and English is the one every page is written in first.
    """
    language = supported_language(request.POST.get("language")) or settings.LANGUAGE_CODE
    next_url = request.POST.get("next") or request.headers.get("Referer") or "/"
    # On https, an http:// address of this very host is refused too: a downgrade.
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = "/"
    user = signed_in_user(request)
    if user is not None:
        user_set_language(user=user, language=language)
    return remember_language(HttpResponseRedirect(next_url), language)


def remember_language(response: HttpResponse, language: str) -> HttpResponse:
    """The visitor's language in the switcher's cookie (LocaleMiddleware reads it)."""
    response.set_cookie(
        settings.LANGUAGE_COOKIE_NAME,
        language,
        max_age=settings.LANGUAGE_COOKIE_AGE,
        samesite="Lax",
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
    )
    return response


def keep_language_after_session(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """Call once the session has ended (sign-out, account deleted) with the page to go to.

    Signed in, the account's saved language wins; signed out, only the cookie and
    Accept-Language are left. Where those would pick another language than the one the
    visitor was reading (a language saved on another device), the cookie keeps it, so the
    next page does not switch under its own flash message. Nothing is pinned when the
    browser already asks for it.
    """
    language = translation.get_language() or settings.LANGUAGE_CODE
    if language != translation.get_language_from_request(request):
        remember_language(response, language)
    return response
