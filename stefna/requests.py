"""The request types of views and endpoints, so `request.user` is typed once.

Behind `login_required`, or an API route whose auth ran, `request.user` (and, in
django-ninja, `request.auth`) is the user model, never AnonymousUser: such views take
an `AuthenticatedRequest`. Pages open to everyone ask `signed_in_user(request)`.
"""

from __future__ import annotations

from django.http import HttpRequest

from stefna.accounts.models import User


class AuthenticatedRequest(HttpRequest):
    user: User
    auth: User


def request_id_of(request: HttpRequest) -> str:
    """The request's id (`X-Request-ID`, set by stefna.middleware.RequestIdMiddleware)."""
    return str(getattr(request, "request_id", ""))


def signed_in_user(request: HttpRequest) -> User | None:
    """The signed-in user, or None for an anonymous visitor."""
    user = request.user
    return user if isinstance(user, User) and user.is_authenticated else None
