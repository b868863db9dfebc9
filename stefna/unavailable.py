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

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.utils.translation import gettext as _
from django.views import defaults

from stefna.errors import error_body

DATABASE_UNAVAILABLE = (OperationalError, InterfaceError)
RETRY_AFTER_SECONDS = 5


def unavailable_body() -> dict[str, object]:
    return error_body(
        "service_unavailable", _("The service is busy or briefly unavailable. Please try again in a few seconds.")
    )


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: 503 when the error is the database's unavailability, else Django's 500."""
    if not isinstance(sys.exc_info()[1], DATABASE_UNAVAILABLE):
        return defaults.server_error(request)
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse(unavailable_body(), status=503)
    else:
        response = HttpResponse(loader.get_template("503.html").render(), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response
