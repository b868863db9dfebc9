"""Your data, your account: `GET /api/me/export` and `DELETE /api/me` (CONTRACT)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from ninja import Router, Schema
from pydantic import Field

from credits.api import PurchaseStatus
from generation.schemas import GenerationStatus
from stefna.api_support import errors

from . import deletion
from .selectors import account_export

router = Router(tags=["account"])


class DeleteAccountIn(Schema):
    confirm: str


# The export's shape (stefna/accounts/selectors.py), declared so /api/openapi.json documents
# its fields as the contract lists them: profile, generations, images with their URLs,
# purchases, ledger. Times are ISO 8601 strings.
class ExportProfileOut(Schema):
    id: str
    email: str
    display_name: str
    language: str = Field(description="The language you picked in the header (`en`, `id`); empty if none.")
    date_joined: str | None
    last_login: str | None
    balance: int


class ExportErrorOut(Schema):
    code: str
    message: str


class ExportGenerationOut(Schema):
    id: str
    preset: str
    kind: str
    status: GenerationStatus
    prompt: str
    prompt_sent: str
    cost: int
    is_public: bool
    photo_url: str | None = Field(description="Your uploaded photo, while it is kept.")
    error: ExportErrorOut | None
    created_at: str | None
    completed_at: str | None
    hidden_from_history: bool


class ExportImageOut(Schema):
    id: str
    generation_id: str
    url: str
    model: str
    width: int | None
    height: int | None
    is_public: bool
    persisted: bool
    created_at: str | None


class ExportLedgerEntryOut(Schema):
    id: int
    amount: int = Field(description="Credits in (positive) or out (negative).")
    reason: str
    generation_id: str | None
    balance_after: int
    note: str
    created_at: str | None


class ExportApiTokenOut(Schema):
    name: str
    prefix: str = Field(description="The token's first characters; the token itself is never stored.")
    created_at: str | None
    last_used_at: str | None
    revoked_at: str | None


class ExportPurchaseOut(Schema):
    id: str
    pack: str
    email: str
    credits: int
    price: int = Field(description="In the currency's minor unit.")
    currency: str
    status: PurchaseStatus
    provider: str
    receipt_url: str
    amount_refunded: int
    credits_taken_back: int
    credits_already_spent: int
    created_at: str | None
    paid_at: str | None


class ExportSignInOut(Schema):
    provider: str
    uid: str
    date_joined: str | None
    last_login: str | None
    extra_data: dict[str, Any] = Field(description="What the provider told us about you.")


class ExportOut(Schema):
    format: str = Field(description="`stefna-export-1`.")
    exported_at: str
    profile: ExportProfileOut
    generations: list[ExportGenerationOut]
    images: list[ExportImageOut]
    ledger: list[ExportLedgerEntryOut]
    api_tokens: list[ExportApiTokenOut]
    purchases: list[ExportPurchaseOut]
    sign_in_accounts: list[ExportSignInOut]


@router.get("/me/export", response={200: ExportOut, **errors(401)}, summary="Everything we hold about you")
def export(request: HttpRequest) -> dict[str, Any]:
    return account_export(user=request.auth, absolute=request.build_absolute_uri)  # type: ignore[attr-defined]


# Registered on the API's own router in stefna/api.py, beside `GET /api/me`: ninja
# answers 405 for a second router's method on a path another router already has.
DELETE_ME: dict[str, Any] = {
    "response": {204: None, **errors(401, 422)},
    "tags": ["account"],
    "summary": "Delete your account for good",
}


def delete(request: HttpRequest, body: DeleteAccountIn) -> HttpResponse:
    deletion.account_delete(user=request.auth, confirm=body.confirm)  # type: ignore[attr-defined]
    if request.user.is_authenticated:
        logout(request)
    return HttpResponse(status=204)
