"""Domain errors shared by every app.

Each carries a stable `code` (part of the API contract), an HTTP status and a message
a person can read. `stefna.api` maps them to JSON once; HTML views turn them into
messages. Apps subclass these next to the code that raises them.

Messages are translated into the language active where the error is raised (the
request's); a message passed in untranslated is looked up again when it is shown.
"""

from __future__ import annotations

from typing import Any

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from stefna.i18n_errors import error_message


def error_body(code: str, message: str, detail: Any = None) -> dict[str, Any]:
    """The body of every JSON error answer (CONTRACT): `{code, message, detail}`, whichever
    layer answers (a view, the API, a middleware before Django's handler)."""
    return {"code": code, "message": message, "detail": detail}


class DomainError(Exception):
    code = "error"
    status = 400
    default_message: Any = _("Something went wrong.")

    def __init__(self, message: str | Promise | None = None, *, detail: Any = None) -> None:
        # In the active language even when raised in English (see stefna.i18n_errors).
        self.message = error_message(message=message, default=self.default_message)
        self.detail = detail
        super().__init__(self.message)


class InvalidInput(DomainError):
    code = "invalid_input"
    status = 422
    # Declared, not inferred: a subclass may give a plain English string (see the module docstring).
    default_message: str | Promise = _("The request is not valid.")


class NotFound(DomainError):
    code = "not_found"
    status = 404
    default_message = _("Not found.")


class Forbidden(DomainError):
    code = "forbidden"
    status = 403
    default_message = _("You are not allowed to do that.")


class Unauthorized(DomainError):
    code = "unauthorized"
    status = 401
    default_message = _("Sign in or send a valid API token.")


class RateLimited(DomainError):
    code = "rate_limited"
    status = 429
    default_message = _("Too many requests. Please wait a moment and try again.")

    def __init__(self, message: str | None = None, *, retry_after: int = 60, detail: Any = None) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(message, detail=detail if detail is not None else {"retry_after": self.retry_after})
