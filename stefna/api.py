"""The JSON API root. Each app adds its own router; errors map to JSON here, once.

Every error answer has the same body: `{"code": …, "message": …, "detail": …}`, whatever
raised it: a domain error, Ninja's validation, Django's Http404/PermissionDenied, an
oversized or malformed body, an unknown route under /api/, or a bug (500).
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.urls import URLPattern, URLResolver, re_path
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from pydantic import Field

from stefna.api_support import RETRY_AFTER_HEADER, ErrorOut, errors
from stefna.auth import api_auth
from stefna.errors import DomainError, Forbidden, NotFound, RateLimited, error_body
from stefna.requests import AuthenticatedRequest
from stefna.unavailable import RETRY_AFTER_SECONDS, unavailable_body

logger = logging.getLogger("stefna.api")

__all__ = ["ErrorOut", "api"]


# Answers the layers in front of every route can give, which no route declares itself.
_EVERY_ROUTE = {
    413: "The body is over the caller's bound (stefna/body_limits.py): `image_too_large`.",
    422: "A NUL in the query string or a field (stefna/input_guard.py): `invalid_input`.",
    500: "A fault on our side: `server_error`.",
    503: "The database is briefly unavailable (stefna/unavailable.py): `service_unavailable`, with Retry-After.",
}
# Answers that tell the client when to try again (429 rate_limited, 503 unavailable).
_RETRY_AFTER_STATUSES = {429, 503}
# Every answer's messages follow it (English or Bahasa Indonesia); codes never do (CONTRACT).
_ACCEPT_LANGUAGE = {
    "in": "header",
    "name": "Accept-Language",
    "required": False,
    "schema": {"type": "string", "examples": ["en", "id"]},
    "description": "`id` for Bahasa Indonesia, else English: the language of every `message`. Codes never change.",
}
_WWW_AUTHENTICATE_HEADER = {
    "WWW-Authenticate": {"description": 'The scheme the API takes: `Bearer realm="api"`.', "schema": {"type": "string"}}
}
_SESSION_WRITES = {403: "Signed in by the browser session without a valid CSRF token: `forbidden`."}


class StefnaAPI(NinjaAPI):
    def get_openapi_schema(self, *args: Any, **kwargs: Any) -> Any:
        """Ninja's document, plus the answers of the layers in front of the routes, so a
        client generated from it knows every status it can get."""
        schema = super().get_openapi_schema(*args, **kwargs)
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
        for path_item in schema["paths"].values():
            for method, operation in path_item.items():
                # Ninja keys responses by int; a str key beside it would be a duplicate.
                responses = operation.setdefault("responses", {})
                extra = dict(_EVERY_ROUTE)
                if method in {"post", "put", "patch", "delete"} and operation.get("security"):
                    extra |= _SESSION_WRITES
                for status, description in extra.items():
                    if status not in responses and str(status) not in responses:
                        responses[status] = {"description": description, "content": error}
                operation.setdefault("parameters", []).append(_ACCEPT_LANGUAGE)
                for status, response in responses.items():
                    if int(status) in _RETRY_AFTER_STATUSES:
                        response.setdefault("headers", {}).update(RETRY_AFTER_HEADER)
                    if int(status) == 401:
                        response.setdefault("headers", {}).update(_WWW_AUTHENTICATE_HEADER)
        return schema

    def _get_urls(self) -> list[URLResolver | URLPattern]:
        urls = [_with_json_405(url) if isinstance(url, URLPattern) else url for url in super()._get_urls()]
        # Last, after every router (including ones added later): any other path under
        # /api/ is a JSON 404, not Django's HTML page.
        return [*urls, re_path(r"^.*$", unknown_route, name="unknown-route")]


def _json_405(response: HttpResponseBase) -> HttpResponseBase:
    if response.status_code != 405 or response.get("Content-Type", "").startswith("application/json"):
        return response
    allowed = response.get("Allow", "")
    json_response = JsonResponse(
        error_body(
            "method_not_allowed",
            _("This route answers %(methods)s.") % {"methods": allowed},
            {"allowed": allowed.split(", ")},
        ),
        status=405,
    )
    json_response["Allow"] = allowed
    return json_response


def _with_json_405(url: URLPattern) -> URLPattern:
    """Ninja answers a known path with the wrong method in plain text; make it our JSON error."""
    view = url.callback
    if inspect.iscoroutinefunction(view):

        async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            return _json_405(await view(request, *args, **kwargs))

        wrapper: Any = async_wrapper
    else:

        def sync_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            return _json_405(view(request, *args, **kwargs))

        wrapper = sync_wrapper
    functools.update_wrapper(wrapper, view)  # keeps csrf_exempt and the view's name
    return URLPattern(url.pattern, wrapper, url.default_args, url.name)


api = StefnaAPI(
    title="Stefna API",
    version="1.0.0",
    description=(
        "Turn photos into art. Authenticate with `Authorization: Bearer <token>` "
        "(create one on your account page or with `manage.py create_api_token`), "
        "or with the browser session plus CSRF token. Errors always answer "
        '`{"code", "message", "detail"}`; `GET /api/presets` and `GET /api/feed` are public '
        "and limited per IP address."
    ),
    # Both are sync and touch the database; Ninja runs sync auth callbacks through
    # sync_to_async for async views, so they are safe on /api/generate-image too.
    auth=api_auth,
    urls_namespace="api",
    docs_url="/docs",
)


def error_response(request: HttpRequest, *, status: int, code: str, message: str, detail: Any = None) -> HttpResponse:
    return api.create_response(request, error_body(code, message, detail), status=status)


@csrf_exempt
def unknown_route(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    return JsonResponse(
        error_body(
            "not_found",
            _("There is no API route %(method)s %(path)s. See /api/docs.")
            % {"method": request.method, "path": request.path},
        ),
        status=404,
    )


@api.exception_handler(DomainError)
def on_domain_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
    # Raised with a plain English message (a service outside a request's language)?
    # Look it up again in the request's language; codes never change.
    message = _(exc.message)
    response = error_response(request, status=exc.status, code=exc.code, message=message, detail=exc.detail)
    if isinstance(exc, RateLimited):
        response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(AuthenticationError)
def on_auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    response = error_response(
        request,
        status=401,
        code="unauthorized",
        message=_("Sign in or send a valid API token (Authorization: Bearer …)."),
    )
    # HTTP requires a 401 to name the scheme it wants (RFC 9110 §11.6.1; RFC 6750 for Bearer).
    response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return error_response(
        request, status=422, code="invalid_input", message=_("The request is not valid."), detail=exc.errors
    )


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    # Ninja raises 400 only for a body it cannot parse (malformed JSON); the contract
    # gives every bad input one answer: 422 invalid_input.
    if exc.status_code == 400:
        return error_response(
            request, status=422, code="invalid_input", message=_("The request body is not valid JSON.")
        )
    if exc.status_code == 403:
        # The only 403 Ninja raises itself is the session CSRF check.
        return error_response(
            request, status=403, code="forbidden", message=_("CSRF check failed: send the X-CSRFToken header.")
        )
    codes = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 429: "rate_limited"}
    return error_response(
        request, status=exc.status_code, code=codes.get(exc.status_code, "error"), message=_(str(exc))
    )


@api.exception_handler(Http404)
def on_not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return on_domain_error(request, NotFound())


@api.exception_handler(PermissionDenied)
def on_permission_denied(request: HttpRequest, exc: PermissionDenied) -> HttpResponse:
    return on_domain_error(request, Forbidden())


@api.exception_handler(RequestDataTooBig)
def on_request_too_big(request: HttpRequest, exc: RequestDataTooBig) -> HttpResponse:
    # Django refuses to buffer a body over DATA_UPLOAD_MAX_MEMORY_SIZE; for our routes
    # that body is an image, so the caller sees the same answer as for a big file.
    return error_response(
        request, status=413, code="image_too_large", message=_("The request is too large. Please send a smaller photo.")
    )


@api.exception_handler(MultiPartParserError)
def on_bad_multipart(request: HttpRequest, exc: MultiPartParserError) -> HttpResponse:
    return error_response(request, status=422, code="invalid_input", message=_("The multipart body could not be read."))


@api.exception_handler(SuspiciousOperation)
def on_suspicious(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
    # Too many fields or files, a malformed header: the client's fault, never a 500.
    return error_response(request, status=422, code="invalid_input", message=_("The request could not be read."))


@api.exception_handler(OperationalError)
@api.exception_handler(InterfaceError)
def on_database_unavailable(request: HttpRequest, exc: Exception) -> HttpResponse:
    # The database is down or the connection pool is exhausted (stefna/unavailable.py).
    logger.warning("database unavailable in %s %s: %s", request.method, request.path, exc)
    body = unavailable_body()
    response = error_response(request, status=503, code=str(body["code"]), message=str(body["message"]))
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


@api.exception_handler(Exception)
def on_unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.error("unhandled error in %s %s", request.method, request.path, exc_info=exc)
    return error_response(
        request, status=500, code="server_error", message=_("Something went wrong on our side. Please try again.")
    )


class MeOut(Schema):
    id: str
    email: str
    display_name: str = Field(description="What other people see: the display name, else the part before the @.")


@api.get("/me", response={200: MeOut, **errors(401)}, tags=["account"], summary="Who am I")
def me(request: AuthenticatedRequest) -> dict[str, str]:
    user = request.auth
    return {"id": str(user.pk), "email": user.email, "display_name": user.public_name}


# Routers, one per app. Imported here, after `api` exists, because routers import
# stefna.api_support (not this module) for their shared pieces.
from credits.api import router as credits_router  # noqa: E402
from generation.api import router as generation_router  # noqa: E402
from presets.api import router as presets_router  # noqa: E402

api.add_router("", presets_router)
api.add_router("", generation_router)
api.add_router("", credits_router)
from stefna.accounts.api import DELETE_ME  # noqa: E402  # export and delete (issue 17)
from stefna.accounts.api import delete as delete_me  # noqa: E402
from stefna.accounts.api import router as accounts_router  # noqa: E402

api.add_router("", accounts_router)
api.delete("/me", **DELETE_ME)(delete_me)
# The fal webhook router (pipeline) is registered below this line.
from generation.webhooks import router as webhook_router  # noqa: E402

api.add_router("/fal", webhook_router)
