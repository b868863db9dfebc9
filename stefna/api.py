"""The JSON API root. Each app adds its own router; errors map to JSON here, once.

Every error answer has the same body: `{"code": …, "message": …, "detail": …}`.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError

from stefna.auth import api_auth
from stefna.errors import DomainError, RateLimited

api = NinjaAPI(
    title="Stefna API",
    version="1.0.0",
    description=(
        "Turn photos into art. Authenticate with `Authorization: Bearer <token>` "
        "(create one on your account page or with `manage.py create_api_token`), "
        "or with the browser session plus CSRF token."
    ),
    auth=api_auth,
    urls_namespace="api",
    docs_url="/docs",
)


class ErrorOut(Schema):
    code: str
    message: str
    detail: Any = None


def error_response(request: HttpRequest, *, status: int, code: str, message: str, detail: Any = None) -> HttpResponse:
    return api.create_response(request, {"code": code, "message": message, "detail": detail}, status=status)


@api.exception_handler(DomainError)
def on_domain_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
    response = error_response(request, status=exc.status, code=exc.code, message=exc.message, detail=exc.detail)
    if isinstance(exc, RateLimited):
        response["Retry-After"] = str(exc.retry_after)
    return response


@api.exception_handler(AuthenticationError)
def on_auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return error_response(
        request, status=401, code="unauthorized", message="Sign in or send a valid API token (Authorization: Bearer …)."
    )


@api.exception_handler(ValidationError)
def on_validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return error_response(
        request, status=422, code="invalid_input", message="The request is not valid.", detail=exc.errors
    )


@api.exception_handler(HttpError)
def on_http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    codes = {400: "invalid_input", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}
    code = codes.get(exc.status_code, "error")
    return error_response(request, status=exc.status_code, code=code, message=str(exc))


@api.get("/me", response={200: dict, 401: ErrorOut}, tags=["account"], summary="Who am I")
def me(request: HttpRequest) -> dict[str, str]:
    user = request.auth  # type: ignore[attr-defined]
    return {"id": str(user.pk), "email": user.email, "display_name": user.public_name}
