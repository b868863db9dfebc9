"""Refuse NUL characters in a request's address, once, at the edge.

PostgreSQL text cannot hold U+0000, so a NUL that reaches a query (a cursor, an id
or a name in the path or query string) is a 500 there while SQLite shrugs. No
legitimate address contains one, so the request is answered 422 (API) or 400
(pages) before any view runs. Form and JSON fields are judged by their own
validation (each names its field; see stefna/accounts/services.py and the prompt
rules), which gives the user a form error rather than an error page.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _

from stefna.errors import error_body


def _has_nul(request: HttpRequest) -> bool:
    if "\x00" in request.path or "%00" in request.META.get("QUERY_STRING", ""):
        return True
    return any("\x00" in value for _, values in request.GET.lists() for value in values)


class RefuseNulMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if _has_nul(request):
            message = _("The address contains a NUL character, which nothing here accepts.")
            if request.path.startswith("/api/"):
                return JsonResponse(error_body("invalid_input", message), status=422)
            return render(request, "400.html", {"message": message}, status=400)
        return self.get_response(request)
