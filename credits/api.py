"""`GET /api/quota`: the caller's credits, with the field names fixed by CONTRACT.md."""

from __future__ import annotations

import datetime as dt

from ninja import Router, Schema
from pydantic import Field

from stefna.api_support import errors
from stefna.requests import AuthenticatedRequest

from .selectors import quota_for

router = Router(tags=["credits"])


class QuotaOut(Schema):
    # camelCase names are the design documents' (and the contract's); kept as-is.
    daily_limit: int = Field(description="Credits granted each UTC day.")
    daily_used: int = Field(description="Credits spent today (UTC), refunds deducted.")
    remaining: int = Field(description="Credits you can spend now.")
    weekly_used: int = Field(description="Credits spent in the last 7 days.")
    dailyReset: dt.datetime = Field(description="When the daily allowance is next applied (UTC midnight).")
    currentBalance: int
    timestamp: dt.datetime


@router.get("/quota", response={200: QuotaOut, **errors(401)}, summary="Your credits")
def quota(request: AuthenticatedRequest) -> dict:
    current = quota_for(user=request.auth)
    return {
        "daily_limit": current.daily_limit,
        "daily_used": current.daily_used,
        "remaining": current.remaining,
        "weekly_used": current.weekly_used,
        "dailyReset": current.daily_reset,
        "currentBalance": current.current_balance,
        "timestamp": current.timestamp,
    }
