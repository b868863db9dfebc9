"""The credits API: the quota, packs, checkout, purchases and Stripe's webhook (names fixed by CONTRACT.md)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from django.http import HttpRequest
from ninja import Query, Router, Schema, Status
from pydantic import Field

from stefna.api_support import errors, limit_public
from stefna.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from stefna.requests import AuthenticatedRequest

from . import selectors
from .models import Purchase
from .payments.purchases import purchase_start
from .payments.webhook import stripe_webhook_handle
from .selectors import quota_for

router = Router(tags=["credits"])


class QuotaOut(Schema):
    # camelCase names are the design documents' (and the contract's); kept as-is.
    daily_limit: int = Field(description="Credits granted each UTC day.")
    daily_used: int = Field(description="Credits spent today (UTC), refunds deducted.")
    remaining: int = Field(description="What is left of today's free allowance.")
    weekly_used: int = Field(description="Credits spent in the last 7 days.")
    dailyReset: dt.datetime = Field(description="When the daily allowance is next applied (UTC midnight).")
    currentBalance: int = Field(description="Everything you can spend now: remaining + purchased_balance.")
    purchased_balance: int = Field(description="Bought and granted credits; they never expire.")
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
        "purchased_balance": current.purchased_balance,
        "timestamp": current.timestamp,
    }


class CreditPackOut(Schema):
    slug: str
    name: str = Field(description="In the request's language (Accept-Language); English when it has no translation.")
    credits: int
    price: int = Field(description="In the currency's minor unit (cents for USD).")
    currency: str = Field(description="ISO 4217, lower case.")


@router.get(
    "/credit-packs",
    auth=None,
    response={200: list[CreditPackOut], **errors(429)},
    summary="Credit packs for sale (no sign-in; limited per IP)",
)
def credit_pack_list(request: HttpRequest) -> list[dict]:
    limit_public(request)
    return [
        {
            "slug": pack.slug,
            "name": pack.display_name,
            "credits": pack.credits,
            "price": pack.price,
            "currency": pack.currency,
        }
        for pack in selectors.credit_packs_for_sale()
    ]


class CheckoutIn(Schema):
    # A slug's characters only: anything else names no pack, and a NUL would reach the
    # query (a 500 on PostgreSQL) if it got that far.
    pack: str = Field(
        min_length=1,
        max_length=40,
        pattern=r"^\s*[-a-zA-Z0-9_]+\s*$",
        description="A pack's slug from GET /api/credit-packs.",
    )


class CheckoutOut(Schema):
    purchase_id: uuid.UUID
    checkout_url: str = Field(description="Send the buyer here: Stripe Checkout, or the offline test checkout.")


@router.post(
    "/checkout",
    response={201: CheckoutOut, **errors(401, 404, 422, 429, 502, 503)},
    summary="Start buying a credit pack",
)
def checkout(request: AuthenticatedRequest, body: CheckoutIn) -> Status:
    purchase = purchase_start(
        user=request.auth,
        pack_slug=body.pack.strip(),
        site_url=request.build_absolute_uri("/"),
    )
    return Status(201, {"purchase_id": purchase.pk, "checkout_url": purchase.checkout_url})


PurchaseStatus = Literal["pending", "paid", "refunded", "disputed", "expired"]


class PurchaseOut(Schema):
    id: uuid.UUID
    pack: str = Field(description="The pack's slug.")
    credits: int
    price: int = Field(description="In the currency's minor unit.")
    currency: str
    status: PurchaseStatus
    created_at: dt.datetime
    paid_at: dt.datetime | None
    receipt_url: str | None = Field(description="Stripe's receipt, once paid.")


class PurchasePageOut(Schema):
    items: list[PurchaseOut]
    next_cursor: str | None


def purchase_out(purchase: Purchase) -> dict:
    return {
        "id": purchase.pk,
        "pack": purchase.pack.slug,
        "credits": purchase.credits,
        "price": purchase.price,
        "currency": purchase.currency,
        "status": purchase.status,
        "created_at": purchase.created_at,
        "paid_at": purchase.paid_at,
        "receipt_url": purchase.receipt_url or None,
    }


@router.get("/purchases", response={200: PurchasePageOut, **errors(401, 422)}, summary="Your purchases, newest first")
def purchase_list(
    request: AuthenticatedRequest,
    cursor: str | None = Query(None, max_length=200, description="`next_cursor` from the previous page."),
    limit: int = Query(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
) -> dict:
    page = selectors.purchase_history(user=request.auth, cursor=cursor, limit=limit)
    return {"items": [purchase_out(purchase) for purchase in page.items], "next_cursor": page.next_cursor}


@router.post(
    "/stripe/webhook",
    auth=None,
    response={200: dict, **errors(400)},
    summary="Stripe's events (signed with STRIPE_WEBHOOK_SECRET)",
)
def stripe_webhook(request: HttpRequest) -> dict[str, str]:
    outcome = stripe_webhook_handle(payload=request.body, signature=request.headers.get("Stripe-Signature", ""))
    return {"received": "true", "outcome": outcome}
