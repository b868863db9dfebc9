"""Pieces every API router shares: the error body schema, response declarations and
the per-IP limit on public routes.

They live here, not in `stefna.api`, because `stefna.api` imports every router: a
router importing `stefna.api` back would be a circular import.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from ninja import Schema
from pydantic import Field

from stefna import ratelimit


class ErrorOut(Schema):
    """Every error answer: a stable code, a message for people, and detail (null when
    there is nothing more to say). All three keys are always there (CONTRACT)."""

    code: str = Field(description="Stable snake_case code, e.g. `insufficient_credits`; never translated.")
    message: str = Field(description="For people, in the request's language (Accept-Language).")
    # Required (no default): every error body carries the key, null or not, so a client
    # generated from the schema may read it without checking that it is there.
    detail: Any = Field(description="More about the error (the field, a limit, an id), or null.")


# Response headers, for the OpenAPI document: what a client may read besides the body.
RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 0},
    }
}


def errors(*statuses: int) -> dict[int, type[ErrorOut]]:
    """Response declarations for the error statuses a route can answer."""
    return dict.fromkeys(statuses, ErrorOut)


def limit_public(request: HttpRequest) -> None:
    """Count one request on a route that needs no sign-in; RateLimited past the per-IP limit."""
    limit, window = settings.RATE_LIMIT_ANON_PER_MINUTE
    ratelimit.hit(f"api-ip:{ratelimit.ip_key(ratelimit.client_ip(request))}", limit=limit, window=window)
