"""API shapes for generations, media and the feed (see ../shared/CONTRACT.md).

Every field is listed explicitly: what a client sees is decided here, never by a model's
field list. `generation_out` builds the contract's Generation from a row whose media and
attempts were prefetched by a selector, so serialising adds no queries.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any, Literal

from ninja import Schema
from pydantic import Field, field_validator

from stefna.i18n_tags import error_message, log_message

from .models import Attempt, Generation, Media

GenerationStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]


# --- Input ----------------------------------------------------------------------------------


class GenerationFormIn(Schema):
    """The non-file fields of a multipart `POST /api/generations` (the file is `image`)."""

    preset: str = Field(min_length=1, max_length=64, description="A preset slug from GET /api/presets.")
    prompt: str = Field(default="", description="Your text; required by presets with requires_prompt.")
    is_public: bool = Field(default=False, description="Show the results in the public feed.")
    notify: bool = Field(default=False, description="Email me when it's done: one email to you when it ends.")
    source_generation: uuid.UUID | None = Field(
        default=None,
        description=(
            "Instead of an image: the id of one of your generations, whose stored photo is used again. "
            "Empty means none."
        ),
    )

    @field_validator("source_generation", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        # A form cannot send null: a field left blank (a form's empty input, a client that
        # always sends every field) arrives as "", which means "no stored photo", not a bad id.
        if isinstance(value, str) and not value.strip():
            return None
        return value


class GenerationJsonIn(GenerationFormIn):
    """A JSON `POST /api/generations`: the photo as a data URI or bare base64 (or `source_generation`)."""

    image_base64: str = Field(default="", description="data:image/jpeg;base64,… or bare base64.")


class StudioFormIn(Schema):
    """The non-file fields of a multipart `POST /api/generate-image` (the file is `image`)."""

    prompt: str = Field(min_length=1, description="What to make of the photo.")


class StudioJsonIn(StudioFormIn):
    image_base64: str = Field(min_length=1, description="data:image/jpeg;base64,… or bare base64.")


class MediaPatchIn(Schema):
    is_public: bool


# --- Output ---------------------------------------------------------------------------------


class LogLineOut(Schema):
    message: str
    level: str
    timestamp: str | None


class AttemptOut(Schema):
    model: str
    fal_job_id: str | None
    status: str
    error: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None


class ImageOut(Schema):
    id: uuid.UUID
    url: str = Field(description="Durable (Cloudinary or local) once `persisted`; fal's own address until then.")
    original_url: str | None
    fal_job_id: str | None
    model: str | None
    width: int | None
    height: int | None
    persisted: bool
    is_public: bool


class GenerationErrorOut(Schema):
    code: str
    message: str


class DebugInfoOut(Schema):
    prompt_sent: str = Field(description="The final prompt sent to the model.")
    original_prompt: str = Field(description="The prompt as you typed it (trimmed).")


class GenerationOut(Schema):
    id: uuid.UUID
    preset: str
    kind: str
    status: GenerationStatus
    prompt: str
    cost: int
    remaining_coins: int = Field(description="The owner's current credit balance.")
    queue_position: int | None
    logs: list[LogLineOut]
    model: str | None = Field(description="The model working on it now, or the last one that did.")
    attempts: list[AttemptOut]
    images: list[ImageOut]
    error: GenerationErrorOut | None
    created_at: dt.datetime
    completed_at: dt.datetime | None
    debug_info: DebugInfoOut


class GenerationPageOut(Schema):
    items: list[GenerationOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class FeedItemOut(Schema):
    id: uuid.UUID
    url: str
    width: int | None
    height: int | None
    generation_id: uuid.UUID
    preset: str
    preset_name: str
    kind: str
    author: str = Field(description="The owner's public name.")
    created_at: dt.datetime


class FeedPageOut(Schema):
    items: list[FeedItemOut]
    next_cursor: str | None


class StudioOut(Schema):
    generation_id: uuid.UUID
    images: list[str]
    remaining_coins: int
    debug_info: DebugInfoOut


class StudioPendingOut(Schema):
    generation_id: uuid.UUID
    status: GenerationStatus
    message: str


# --- Builders -------------------------------------------------------------------------------

# Turns a stored address into one a client can fetch: local storage keeps site-relative
# paths ("/media/…"), which mean nothing to an API client, so the endpoints pass
# `request.build_absolute_uri`. Cloudinary and fal addresses are already absolute.
UrlMaker = Callable[[str], str]


def _as_is(url: str) -> str:
    return url


def absolute_url_maker(build_absolute_uri: UrlMaker) -> UrlMaker:
    def make(url: str) -> str:
        if url.startswith("/") and not url.startswith("//"):
            return build_absolute_uri(url)
        return url

    return make


def _blank_to_none(value: str | None) -> str | None:
    return value or None


def image_out(media: Media, *, url: UrlMaker = _as_is) -> dict[str, Any]:
    return {
        "id": media.pk,
        "url": url(media.url),
        # fal's own address; in offline preview mode a path on this site, made absolute like `url`.
        "original_url": url(media.original_url) if media.original_url else None,
        "fal_job_id": _blank_to_none(media.fal_job_id),
        "model": _blank_to_none(media.model),
        "width": media.width,
        "height": media.height,
        "persisted": media.persisted,
        "is_public": media.is_public,
    }


def _attempt_out(attempt: Attempt) -> dict[str, Any]:
    return {
        "model": attempt.model,
        "fal_job_id": _blank_to_none(attempt.fal_job_id),
        "status": attempt.status,
        "error": _blank_to_none(attempt.error),
        "started_at": attempt.started_at,
        "finished_at": attempt.finished_at,
    }


def _log_out(line: Any) -> dict[str, Any]:
    # Log lines are JSON written by the pipeline; tolerate a missing key rather than
    # failing a whole status answer over one odd line. Written in English, answered in
    # the request's language (CONTRACT: API messages follow Accept-Language).
    if not isinstance(line, dict):
        return {"message": log_message(str(line)), "level": "info", "timestamp": None}
    timestamp = line.get("timestamp")
    return {
        "message": log_message(str(line.get("message", ""))),
        "level": str(line.get("level", "info")),
        "timestamp": str(timestamp) if timestamp is not None else None,
    }


def generation_out(generation: Generation, *, remaining_coins: int, url: UrlMaker = _as_is) -> dict[str, Any]:
    """The contract's Generation. Media and attempts must be prefetched (see selectors)."""
    return _generation_out(
        generation,
        attempts=list(generation.attempts.all()),
        media=generation.media.all(),
        remaining_coins=remaining_coins,
        url=url,
    )


def generation_row_out(row: Any, *, url: UrlMaker = _as_is) -> dict[str, Any]:
    """The contract's Generation from a `status_reads.GenerationRow` (the status route's
    static SQL): the same answer `generation_out` gives for the same generation."""
    return _generation_out(row, attempts=row.attempts, media=row.media, remaining_coins=row.balance or 0, url=url)


def _generation_out(
    generation: Any, *, attempts: list[Any], media: Any, remaining_coins: int, url: UrlMaker
) -> dict[str, Any]:
    # `generation`, `attempts` and `media` are model instances or rows with the same attribute names.
    model = generation.current_model or (attempts[-1].model if attempts else "")
    error = (
        {"code": generation.error_code, "message": error_message(generation.error_message) or generation.error_code}
        if generation.error_code
        else None
    )
    return {
        "id": generation.pk,
        "preset": generation.preset_slug,
        "kind": generation.kind,
        "status": generation.status,
        "prompt": generation.prompt,
        "cost": generation.cost,
        "remaining_coins": remaining_coins,
        "queue_position": generation.queue_position,
        "logs": [_log_out(line) for line in (generation.logs or [])],
        "model": model or None,
        "attempts": [_attempt_out(attempt) for attempt in attempts],
        "images": [image_out(item, url=url) for item in media],
        "error": error,
        "created_at": generation.created_at,
        "completed_at": generation.completed_at,
        "debug_info": {"prompt_sent": generation.prompt_sent, "original_prompt": generation.prompt},
    }


def feed_item_out(media: Media, *, url: UrlMaker = _as_is) -> dict[str, Any]:
    generation = media.generation
    return {
        "id": media.pk,
        "url": url(media.url),
        "width": media.width,
        "height": media.height,
        "generation_id": generation.pk,
        "preset": generation.preset_slug,
        "preset_name": generation.preset_name,
        "kind": generation.kind,
        "author": media.user.public_name,
        "created_at": media.created_at,
    }
