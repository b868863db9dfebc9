"""Your data, your account: `GET /api/me/export` and `DELETE /api/me` (CONTRACT)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from ninja import Router, Schema

from stefna.api_support import errors

from . import deletion
from .selectors import account_export

router = Router(tags=["account"])


class DeleteAccountIn(Schema):
    confirm: str


@router.get("/me/export", response={200: dict[str, Any], **errors(401)}, summary="Everything we hold about you")
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
