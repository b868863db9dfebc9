"""API authentication: a personal token as `Authorization: Bearer …`, or the browser session."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja.security import HttpBearer, SessionAuth

from stefna.accounts.services import api_token_authenticate, hash_token


class ApiTokenAuth(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Any:
        user = api_token_authenticate(token)
        if user is None:
            return None
        request.user = user
        # Kept so an answer that outlives the request (a live stream) can ask again
        # whether the token still holds (stefna.accounts.selectors.still_signed_in).
        request.api_token_hash = hash_token(token)  # type: ignore[attr-defined]
        # Token clients are not browsers: CSRF protects cookies, not bearer tokens.
        request._dont_enforce_csrf_checks = True  # type: ignore[attr-defined]
        return user


class SignedInSessionAuth(SessionAuth):
    """The browser session, with CSRF checked only once there *is* a signed-in session.

    Ninja's SessionAuth checks CSRF first, so an anonymous write (or one with a wrong
    bearer token) would get 403 "CSRF failed" instead of the truthful 401.
    """

    def __call__(self, request: HttpRequest) -> Any:
        if not request.user.is_authenticated:
            return None
        return super().__call__(request)


# A bearer token, else the browser session (whose unsafe methods need the CSRF token).
api_auth = [ApiTokenAuth(), SignedInSessionAuth(csrf=True)]
