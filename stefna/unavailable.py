"""The database is down or every pooled connection is busy: 503, not 500.

A restart of PostgreSQL, a full connection pool (DB_POOL_MAX_SIZE, waited on for
DB_POOL_TIMEOUT) or a refused connection all reach Django as `OperationalError` (psycopg's
`PoolTimeout` is one too) or `InterfaceError`. Those are not bugs: the request may simply
be tried again shortly, so the answer says so with 503 and `Retry-After`. The API maps the
exceptions in stefna/api.py (`service_unavailable`); pages get templates/503.html through
`handler500` here, which sees the exception being handled.
"""

from __future__ import annotations

import sys

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.utils.translation import gettext as _

from stefna.errors import error_body

DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 5


def unavailable_body() -> dict[str, object]:
    return error_body(
        "service_unavailable", _("The service is busy or briefly unavailable. Please try again in a few seconds.")
    )


def _page(template_name: str, status: int) -> HttpResponse:
    # Rendered without a request or context processors (they may be what failed), but
    # offline preview mode still says so on every page (CONTRACT, "First run").
    return HttpResponse(
        loader.get_template(template_name).render({"offline_mode": settings.OFFLINE_MODE}), status=status
    )


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: 503 when the error is the database's unavailability, else the 500 page."""
    if not isinstance(sys.exc_info()[1], DATABASE_UNAVAILABLE):
        return _page("500.html", 500)
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse(unavailable_body(), status=503)
    else:
        response = _page("503.html", 503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
