"""Helpers for the JSON API tests (test_api*.py)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from credits.models import CreditEntry
from credits.selectors import balance_of
from generation.models import Generation
from tests.images import make_jpeg

ERROR_KEYS = {"code", "message", "detail"}
GENERATION_KEYS = {
    "id",
    "preset",
    "kind",
    "status",
    "prompt",
    "cost",
    "remaining_coins",
    "queue_position",
    "logs",
    "model",
    "attempts",
    "images",
    "error",
    "created_at",
    "completed_at",
    "debug_info",
}
IMAGE_KEYS = {"id", "url", "original_url", "fal_job_id", "model", "width", "height", "persisted", "is_public"}
ATTEMPT_KEYS = {"model", "fal_job_id", "status", "error", "started_at", "finished_at"}


def photo(data: bytes | None = None, name: str = "photo.jpg", content_type: str = "image/jpeg") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, make_jpeg() if data is None else data, content_type=content_type)


def data_uri(data: bytes, media_type: str = "image/jpeg") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode()}"


def stored_files() -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert set(body) == ERROR_KEYS
    assert body["code"] == code
    assert body["message"]
    return body


def assert_nothing_charged_or_stored(user, *, balance_before: int) -> None:
    """A refusal leaves no generation, no reservation, no file, and the balance as it was."""
    assert Generation.objects.count() == 0
    assert not CreditEntry.objects.filter(user=user, reason=CreditEntry.Reason.RESERVE).exists()
    assert balance_of(user=user) == balance_before
    assert stored_files() == []
