"""API authentication: a personal token as `Authorization: Bearer …`, or the browser session."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from stefna.accounts.services import api_token_authenticate


class ApiTokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = api_token_authenticate(token)
        if user is None:
            return None
        request.user = user
        # Token clients are not browsers: CSRF protects cookies, not bearer tokens.
        request._dont_enforce_csrf_checks = True  # type: ignore[attr-defined]
        return user


# Session auth checks CSRF on unsafe methods, so a session-authenticated write needs the token.
api_auth = [ApiTokenAuth(), SessionAuth(csrf=True)]
