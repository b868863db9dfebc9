"""Generation routes: start, follow, cancel, list; the public feed; media visibility and
deletion; and the one-call studio (`POST /api/generate-image`).

Thin edges: parse, call one service or selector, shape the answer (generation/schemas.py).
Uploads are read here rather than through Ninja's File/Form params because a route takes
*either* multipart *or* JSON, which Ninja cannot express; the OpenAPI request body is
declared by hand below so /api/docs still shows both.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils import translation
from django.utils.translation import gettext_lazy as _
from ninja import Header, Query, Router, Schema, Status
from pydantic import BaseModel
from pydantic import ValidationError as PydanticValidationError

from credits.selectors import balance_of
from stefna.api_support import errors, limit_public
from stefna.db import release_request_connection
from stefna.errors import DomainError, InvalidInput, NotFound
from stefna.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from stefna.requests import AuthenticatedRequest, request_id_of

from . import etags, event_stream, first_page, selectors, services, status_reads
from .images import ValidatedImage, decode_base64_image, image_too_large, validate_image
from .models import Generation
from .photos import source_photo
from .schemas import (
    FeedPageOut,
    GenerationFormIn,
    GenerationJsonIn,
    GenerationOut,
    GenerationPageOut,
    GenerationStatus,
    ImageOut,
    MediaPatchIn,
    StudioFormIn,
    StudioJsonIn,
    StudioOut,
    StudioPendingOut,
    UrlMaker,
    absolute_url_maker,
    feed_item_out,
    generation_out,
    generation_row_out,
    image_out,
)

router = Router(tags=["generations"])

# The studio's preset (seeded by presets' data migration): flux-general image-to-image.
STUDIO_PRESET_SLUG = "image_to_image"
# Multipart bodies carry the file plus a few short fields; anything much larger than the
# file limit is refused from its Content-Length, before Django spools it to disk.
MULTIPART_OVERHEAD_BYTES = 1024 * 1024

_ETAG_HEADER = {
    "ETag": {
        "description": "This state of the generation (in this language); send it back as If-None-Match.",
        "schema": {"type": "string"},
    }
}

IdempotencyKey = Header(
    None,
    alias="Idempotency-Key",
    max_length=200,
    description="Repeat a request safely: the same key and request returns the first generation, charging nothing.",
)


class GenerationFailed(DomainError):
    code = "generation_failed"
    status = 502
    default_message = _("Every model failed on this photo. Your credits were refunded.")


class GenerationCanceled(DomainError):
    code = "generation_canceled"
    status = 409
    default_message = _("The generation was canceled. Your credits were refunded.")


# --- Reading an upload (multipart or JSON) -----------------------------------------------


def _pydantic_errors(exc: PydanticValidationError, source: str) -> list[dict[str, Any]]:
    return [{"loc": [source, *error["loc"]], "msg": error["msg"], "type": error["type"]} for error in exc.errors()]


def _read_upload[FieldsT: BaseModel](
    request: HttpRequest, *, form_schema: type[FieldsT], json_schema: type[FieldsT]
) -> tuple[FieldsT, bytes | None]:
    """The request's fields and raw image bytes, from multipart (`image` file) or JSON
    (`image_base64`); None when no image came (`source_generation` may stand in for it).
    Raises the contract's errors; reads nothing it then refuses."""
    content_type = request.content_type or ""
    if content_type == "multipart/form-data":
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
        if declared > settings.MAX_UPLOAD_BYTES + MULTIPART_OVERHEAD_BYTES:
            raise image_too_large()
        try:
            fields = form_schema.model_validate(request.POST.dict())
        except PydanticValidationError as exc:
            raise InvalidInput(detail=_pydantic_errors(exc, "form")) from exc
        upload = request.FILES.get("image")
        if upload is None:
            # A stored photo (`source_generation`), or none: a text-to-image style needs
            # none, and the request service refuses a missing one for the other styles.
            return fields, None
        if upload.size is not None and upload.size > settings.MAX_UPLOAD_BYTES:
            raise image_too_large()
        return fields, upload.read()
    if content_type in ("application/json", ""):
        try:
            body = json.loads(request.body or b"null")
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: [[[[… nested too deep
            raise InvalidInput(_("The request body is not valid JSON.")) from exc
        if not isinstance(body, dict):
            raise InvalidInput(_("The request body must be a JSON object."))
        if not _all_text_encodes(body):
            # JSON lets a string hold half a surrogate pair ("\ud800"); no database can store
            # one, and the prompt's insert was a 500.
            raise InvalidInput(_("The request body is not valid JSON."), detail={"reason": "lone surrogate"})
        try:
            fields = json_schema.model_validate(body)
        except PydanticValidationError as exc:
            raise InvalidInput(detail=_pydantic_errors(exc, "body")) from exc
        if not getattr(fields, "image_base64", ""):
            return fields, None  # a stored photo (`source_generation`) or none, as above
        # Both JSON schemas carry `image_base64` (a str), which FieldsT's bound cannot say.
        return fields, decode_base64_image(str(getattr(fields, "image_base64", "")))
    raise InvalidInput(
        _("Send multipart/form-data (with an `image` file) or application/json (with `image_base64`)."),
        detail={"field": "Content-Type", "received": content_type[:100]},
    )


def _all_text_encodes(value: object) -> bool:
    """Every string in a parsed JSON body is valid Unicode (UTF-8 can encode it). The photo's
    base64 is left to its decoder, which refuses anything but ASCII without copying it."""
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, dict):
        return all(
            _all_text_encodes(key) and (key == "image_base64" or _all_text_encodes(item)) for key, item in value.items()
        )
    if isinstance(value, list):
        return all(_all_text_encodes(item) for item in value)
    return True


def _read_generation_input(request: HttpRequest) -> tuple[GenerationFormIn, ValidatedImage | None]:
    """The fields and the photo: uploaded, stored (`source_generation`), or None (no photo)."""
    fields, data = _read_upload(request, form_schema=GenerationFormIn, json_schema=GenerationJsonIn)
    if data is not None:
        return fields, validate_image(data)
    if fields.source_generation:
        return fields, source_photo(user=request.auth, generation_id=fields.source_generation)  # type: ignore[attr-defined]
    return fields, None


def _read_studio_input(request: HttpRequest) -> tuple[StudioFormIn, ValidatedImage]:
    fields, data = _read_upload(request, form_schema=StudioFormIn, json_schema=StudioJsonIn)
    if data is None:  # the studio always transforms a photo
        raise InvalidInput(_("Attach the photo as the `image` file field."), detail={"field": "image"})
    return fields, validate_image(data)


def _urls(request: HttpRequest) -> UrlMaker:
    return absolute_url_maker(request.build_absolute_uri)


def _upload_body(form_schema: type[Schema], json_schema: type[Schema], description: str) -> dict[str, Any]:
    """The OpenAPI request body for a route taking multipart (file `image`) or JSON."""
    form = form_schema.model_json_schema()
    form["properties"] = {"image": {"type": "string", "format": "binary"}, **form["properties"]}
    # With `source_generation` the file is optional (either one is needed, except for a
    # style whose `needs_photo` is false, which takes neither).
    image_required = [] if "source_generation" in form["properties"] else ["image"]
    form["required"] = [*image_required, *form.get("required", [])]
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                "multipart/form-data": {"schema": form},
                "application/json": {"schema": json_schema.model_json_schema()},
            },
        }
    }


# --- Generations ---------------------------------------------------------------------------


@router.post(
    "/generations",
    response={202: GenerationOut, **errors(401, 402, 403, 409, 413, 415, 422, 429)},
    summary="Start a generation",
    description=(
        "Answers 202 with the new Generation (poll `GET /api/generations/{id}`). With an "
        "`Idempotency-Key` already used for the same request, answers 202 with the first "
        "generation as it stands now, header `Idempotent-Replayed: true`, and charges nothing; "
        "for a different request, 409 `idempotency_conflict`."
    ),
    openapi_extra={
        **_upload_body(
            GenerationFormIn,
            GenerationJsonIn,
            "The photo (JPEG, PNG, WebP, HEIC or AVIF, checked by decoding it), or `source_generation`, and the "
            "style. A style whose `needs_photo` is false (text-to-image, see `GET /api/presets`) takes neither.",
        ),
        # Int keys, as ninja keys the responses: a "202" beside 202 would be a duplicate.
        "responses": {
            202: {
                "headers": {
                    "Idempotent-Replayed": {
                        "description": "`true` when this answers a repeat of an earlier request's Idempotency-Key.",
                        "schema": {"type": "string", "enum": ["true"]},
                    }
                }
            }
        },
    },
)
def generation_create(
    request: AuthenticatedRequest, response: HttpResponse, idempotency_key: str | None = IdempotencyKey
) -> Status[dict]:
    user = request.auth
    fields, image = _read_generation_input(request)
    generation, created = services.generation_request(
        user=user,
        preset_slug=fields.preset,
        image=image,
        prompt=fields.prompt,
        is_public=fields.is_public,
        idempotency_key=idempotency_key,
        notify=fields.notify,
        request_id=request_id_of(request),
    )
    # The status endpoint's static statements (status_reads): the same answer as
    # generation_get_with_balance + generation_out, at under half the cost per upload.
    row = status_reads.generation_status_row(user=user, generation_id=generation.pk)
    if not created:
        # A retry gets the answer the first request got (the contract's 202), so a client
        # that checks the status needs no second case; the header tells the two apart.
        response.headers["Idempotent-Replayed"] = "true"
    return Status(202, generation_row_out(row, url=_urls(request)))


@router.get(
    "/generations",
    response={200: GenerationPageOut, **errors(401, 422)},
    summary="Your generations, newest first",
)
def generation_list(
    request: AuthenticatedRequest,
    cursor: str | None = Query(None, max_length=200, description="`next_cursor` from the previous page."),
    limit: int = Query(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
    kind: str | None = Query(None, max_length=32),
    status: GenerationStatus | None = None,
) -> dict:
    user = request.auth
    page = selectors.generation_history(user=user, cursor=cursor, limit=limit, kind=kind, status=status)
    balance = balance_of(user=user)
    return {
        "items": [generation_out(generation, remaining_coins=balance, url=_urls(request)) for generation in page.items],
        "next_cursor": page.next_cursor,
    }


@router.get(
    "/generations/{generation_id}",
    response={200: GenerationOut, 304: None, **errors(401, 404, 422)},
    summary="One of your generations",
    description=(
        "Answers with an `ETag`; send it back as `If-None-Match` and an unchanged generation "
        "is answered 304 with no body, at a fraction of the cost."
    ),
    # The view reads If-None-Match itself (a cheaper query when it is sent); declared here.
    openapi_extra={
        "parameters": [
            {
                "in": "header",
                "name": "If-None-Match",
                "required": False,
                "schema": {"type": "string"},
                "description": "The `ETag` of an earlier answer: 304 when the generation has not changed since.",
            }
        ],
        "responses": {200: {"headers": _ETAG_HEADER}, 304: {"headers": _ETAG_HEADER}},
    },
)
def generation_detail(
    request: AuthenticatedRequest, generation_id: uuid.UUID, response: HttpResponse
) -> dict | HttpResponse:
    # Polled by clients while a job runs. A poll that sends the ETag of the current state
    # is answered 304 from one small query (generation/etags.py); otherwise static SQL (see
    # status_reads), the same answer as selectors.generation_get_with_balance + generation_out.
    language = translation.get_language()
    unchanged = etags.not_modified_since(
        request,
        user_id=request.auth.pk,
        generation_id=generation_id,
        etag_of=lambda state: etags.api_etag(version=state.version, balance=state.balance, language=language),
    )
    if unchanged is not None:
        return unchanged
    row = status_reads.generation_status_row(user=request.auth, generation_id=generation_id)
    etags.with_etag(response, etags.api_etag(version=row.version, balance=row.balance, language=language))
    return generation_row_out(row, url=_urls(request))


@router.get(
    "/generations/{generation_id}/events",
    response={200: None, 204: None, **errors(401, 404, 422)},
    summary="Follow one of your generations live (Server-Sent Events)",
    description=(
        "`text/event-stream`: an event at once with the current state, then one each time the "
        "generation changes; each event's `id` is the generation's version and its `data` the "
        "Generation exactly as `GET /api/generations/{id}` answers it. Comment lines keep the "
        "connection open. The stream ends after a final state (and after a bound; reconnect "
        "with `Last-Event-ID` and nothing is missed or repeated). A reconnect once the final "
        "state was delivered is answered 204."
    ),
    # An int key, as ninja keys the responses above: a "200" beside 200 is a duplicate key
    # in the JSON, which Swagger UI refuses to render.
    openapi_extra={"responses": {200: {"description": "The event stream", "content": {"text/event-stream": {}}}}},
)
def generation_events(
    request: AuthenticatedRequest,
    generation_id: uuid.UUID,
    last_event_id: str | None = Header(None, alias="Last-Event-ID", max_length=20),
) -> HttpResponseBase:
    # A sync view that answers with an async stream: the checks run in one trip to a
    # thread (stefna/asgi_handler.py) and the event loop then writes the events.
    user = request.auth
    resume = _event_id(last_event_id)
    state = status_reads.generation_watch_state(user_id=user.pk, generation_id=generation_id)
    if state is None:
        raise NotFound(_("Generation not found."))
    if resume == state.version and state.status in Generation.FINAL_STATUSES:
        return HttpResponse(status=204)
    if not isinstance(request, ASGIRequest):
        # WSGI: a short answer, the browser reconnects (see generation/event_stream.py).
        row = status_reads.generation_status_row(user=user, generation_id=generation_id)
        body = event_stream.short_answer(row=row, last_event_id=resume, url=_urls(request))
        return event_stream.event_response(HttpResponse(body or b"", status=200 if body else 204))
    return event_stream.stream_response(
        request,
        generation_id=generation_id,
        version=state.version,
        last_event_id=resume,
        snapshot=event_stream.api_snapshot(user=user, generation_id=generation_id, url=_urls(request)),
    )


def _event_id(value: str | None) -> int | None:
    try:
        return event_stream.last_event_id(value)
    except ValueError:
        raise InvalidInput(
            _("Last-Event-ID must be an event id this stream sent."), detail={"field": "Last-Event-ID"}
        ) from None


@router.post(
    "/generations/{generation_id}/cancel",
    response={200: GenerationOut, **errors(401, 403, 404, 409, 422)},
    summary="Cancel a queued or running generation (refunds it)",
    description="409 `invalid_state` when the generation has already finished.",
)
def generation_cancel(request: AuthenticatedRequest, generation_id: uuid.UUID) -> dict:
    user = request.auth
    services.generation_cancel(generation_id=generation_id, user=user)
    generation, balance = selectors.generation_get_with_balance(user=user, generation_id=generation_id)
    return generation_out(generation, remaining_coins=balance, url=_urls(request))


# --- Feed and media ------------------------------------------------------------------------


@router.get(
    "/feed",
    auth=None,
    response={200: FeedPageOut, **errors(422, 429)},
    tags=["feed"],
    summary="Public images, newest first (no sign-in; limited per IP)",
)
def feed(
    request: HttpRequest,
    cursor: str | None = Query(None, max_length=200, description="`next_cursor` from the previous page."),
    limit: int = Query(DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE),
) -> dict:
    limit_public(request)

    def make() -> dict[str, Any]:
        page = selectors.generation_feed(cursor=cursor, limit=limit)
        return {
            "items": [feed_item_out(media, url=_urls(request)) for media in page.items],
            "next_cursor": page.next_cursor,
        }

    # The first page is the same for every caller at this address (generation/first_page.py).
    return first_page.kept.page(("api", request.build_absolute_uri("/"), limit), cursor, make)


@router.patch(
    "/media/{media_id}",
    response={200: ImageOut, **errors(401, 403, 404, 422, 429)},
    tags=["media"],
    summary="Show or hide one of your images in the public feed",
)
def media_update(request: AuthenticatedRequest, media_id: uuid.UUID, payload: MediaPatchIn) -> dict:
    media = services.media_set_public(user=request.auth, media_id=media_id, is_public=payload.is_public)
    return image_out(media, url=_urls(request))


@router.delete(
    "/media/{media_id}",
    response={204: None, **errors(401, 403, 404, 422)},
    tags=["media"],
    summary="Delete one of your images for good",
)
def media_remove(request: AuthenticatedRequest, media_id: uuid.UUID) -> Status[None]:
    services.media_delete(user=request.auth, media_id=media_id)
    return Status(204, None)


# --- The studio in one call ----------------------------------------------------------------


@router.post(
    "/generate-image",
    response={200: StudioOut, 202: StudioPendingOut, **errors(401, 402, 403, 404, 409, 413, 415, 422, 429, 502)},
    tags=["studio"],
    summary="Image-to-image in one call: waits for the result",
    description=(
        "Starts an `image_to_image` generation and waits up to GENERATE_IMAGE_WAIT_SECONDS "
        "(default 60) for it. Answers 200 with the image URLs, or 202 with `generation_id` "
        "when the wait runs out (follow it with `GET /api/generations/{id}`). 502 "
        "`generation_failed` when every model failed (refunded); 409 `generation_canceled`."
    ),
    openapi_extra=_upload_body(StudioFormIn, StudioJsonIn, "The photo and what to make of it."),
)
async def generate_image(request: AuthenticatedRequest, idempotency_key: str | None = IdempotencyKey) -> Status[dict]:
    user = request.auth
    # Decoding a photo is CPU work: do it on a thread so the event loop keeps serving.
    fields, image = await sync_to_async(_read_studio_input, thread_sensitive=False)(request)
    generation, _created = await sync_to_async(services.generation_request)(
        user=user,
        preset_slug=STUDIO_PRESET_SLUG,
        image=image,
        prompt=fields.prompt,
        is_public=False,
        idempotency_key=idempotency_key,
        request_id=request_id_of(request),
    )
    await sync_to_async(release_request_connection)()
    status = await _wait_until_final(generation.pk, status=generation.status)
    if status == Generation.Status.FAILED:
        raise GenerationFailed(detail={"generation_id": str(generation.pk)})
    if status == Generation.Status.CANCELED:
        raise GenerationCanceled(detail={"generation_id": str(generation.pk)})
    if status != Generation.Status.SUCCEEDED:
        return Status(
            202,
            {
                "generation_id": generation.pk,
                "status": status,
                "message": str(_("Still working on it. Follow it with GET /api/generations/{id}.")),
            },
        )
    done, balance = await sync_to_async(selectors.generation_get_with_balance)(user=user, generation_id=generation.pk)
    return Status(
        200,
        {
            "generation_id": done.pk,
            "images": [_urls(request)(media.url) for media in done.media.all()],
            "remaining_coins": balance,
            "debug_info": {"prompt_sent": done.prompt_sent, "original_prompt": done.prompt},
        },
    )


async def _wait_until_final(generation_id: uuid.UUID, *, status: str) -> str:
    """Poll the row's status until it is final or the bound passes.

    asyncio.sleep between polls holds no thread: a waiting client costs a coroutine,
    and each poll is one primary-key read on a shared connection (see selectors.generation_status_value).
    """
    deadline = time.monotonic() + float(settings.GENERATE_IMAGE_WAIT_SECONDS)
    interval = float(settings.GENERATE_IMAGE_POLL_SECONDS)
    while status not in Generation.FINAL_STATUSES:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        await asyncio.sleep(min(interval, remaining))
        polled = await selectors.generation_status_value(generation_id=generation_id)
        if polled is None:
            raise NotFound(_("Generation not found."))
        status = polled
    return status
