"""`GET /api/generations/{id}/events`: a generation's changes as Server-Sent Events.

The stream sends `retry:` first (how long a browser waits before reconnecting), then an
event at once with the current state (unless `Last-Event-ID` already names it), then an
event each time the generation's version moves (generation/live.py wakes it), with a
comment line every LIVE_HEARTBEAT_SECONDS so proxies keep the connection open. Each event's
`id` is the version and its `data` the Generation exactly as `GET /api/generations/{id}`
answers it (same schema, same encoder). It ends after sending a final state, or after
LIVE_STREAM_SECONDS (the browser reconnects with `Last-Event-ID` and misses nothing), or
within a heartbeat of its token's revocation or its session's end (the reconnect gets 401).
A reconnect after the final state was delivered is answered 204, which tells a browser's
EventSource to stop.

Under WSGI (runserver, gunicorn's sync workers) a long stream would hold a worker thread,
so the answer is short instead: the current state if it moved, then the connection closes
and the browser reconnects after `retry` ms. That is polling by reconnection, at the cost
of one small query per reconnect.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, NamedTuple

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse
from django.utils import translation
from ninja.responses import NinjaJSONEncoder

from stefna.accounts.models import User
from stefna.accounts.selectors import still_signed_in
from stefna.db import release_request_connection
from stefna.errors import NotFound

from . import live, status_reads, status_thread
from .models import Generation
from .schemas import GenerationOut, UrlMaker, generation_row_out

CONTENT_TYPE = "text/event-stream; charset=utf-8"


def retry_field() -> bytes:
    return f"retry: {settings.LIVE_RETRY_MILLISECONDS}\n\n".encode()


def event_bytes(row: status_reads.GenerationRow, *, url: UrlMaker) -> bytes:
    """One SSE event: `id` the version, `data` the Generation as the API answers it."""
    data = GenerationOut.model_validate(generation_row_out(row, url=url)).model_dump()
    # The API's encoder on one line (compact separators would differ from GET's bytes).
    body = json.dumps(data, cls=NinjaJSONEncoder)
    return f"id: {row.version}\ndata: {body}\n\n".encode()


def sse_event(version: int, data: str) -> bytes:
    """One event with `id` the version; `data` may span lines (one `data:` field each,
    which the browser's EventSource joins with newlines again)."""
    fields = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"id: {version}\n{fields}\n".encode()


class Snapshot(NamedTuple):
    version: int
    status: str
    event: bytes | None  # None when `version` is the one already sent


# A stream's read: `sent` (the version the client holds, or None) → the generation's
# state, with its event encoded unless `sent` is that version; None if it is gone. It runs
# on the status thread, so the event loop, which writes every answer and every event of
# this process, only writes the bytes.
SnapshotRead = Callable[[int | None], Snapshot | None]


def api_snapshot(*, user: User, generation_id: uuid.UUID, url: UrlMaker) -> SnapshotRead:
    """The API's events: the Generation as `GET /api/generations/{id}` answers it, in the
    request's language (its messages are translated on the status thread, not the request's)."""
    language = translation.get_language()

    def read(sent: int | None) -> Snapshot | None:
        try:
            row = status_reads.generation_status_row(user=user, generation_id=generation_id)
        except NotFound:
            return None
        if row.version == sent:
            return Snapshot(row.version, row.status, None)
        with translation.override(language):
            return Snapshot(row.version, row.status, event_bytes(row, url=url))

    return read


async def events(
    *,
    generation_id: uuid.UUID,
    version: int,
    last_event_id: int | None,
    snapshot: SnapshotRead,
    still_signed_in: Callable[[], bool],
) -> AsyncIterator[bytes]:
    """The event stream of a generation whose version was `version` when its ownership was
    checked, each event made by `snapshot` (the API's JSON, or the status page's card).
    Holds no thread and no database connection while it waits.

    A stream outlives the request that signed it in, so once it is older than a
    heartbeat it asks `still_signed_in` again (at most once a heartbeat) before sending
    anything more, and ends when the token was revoked or the session ended: the
    client's reconnect then meets the 401. Streams shorter than that (most: a job takes
    seconds) never ask.
    """
    yield retry_field()
    started = time.monotonic()
    deadline = started + settings.LIVE_STREAM_SECONDS
    checked = started
    sent = last_event_id

    async def signed_out() -> bool:
        nonlocal checked
        if time.monotonic() - checked < settings.LIVE_HEARTBEAT_SECONDS:
            return False
        checked = time.monotonic()
        return not await status_thread.run_on_status_connection(still_signed_in)

    with live.hub().watch(generation_id, version=version) as watch:
        while True:
            if watch.version is None or sent is None or watch.version != sent:
                if await signed_out():
                    return
                state = await status_thread.run_on_status_connection(snapshot, sent=sent)
                if state is None:
                    return  # deleted meanwhile
                if state.event is not None:
                    yield state.event
                    sent = state.version
                if state.status in Generation.FINAL_STATUSES:
                    return
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or watch.ending:
                    # At the stream's age limit, or the process is stopping: end cleanly;
                    # the client reconnects with Last-Event-ID and misses nothing.
                    return
                if await watch.wait(min(settings.LIVE_HEARTBEAT_SECONDS, remaining)):
                    break
                if await signed_out():
                    return
                yield b": keep-alive\n\n"


def stream_response(
    request: HttpRequest, *, generation_id: uuid.UUID, version: int, last_event_id: int | None, snapshot: SnapshotRead
) -> StreamingHttpResponse:
    """The answer that streams `events` (under ASGI) to `request`'s signed-in user. The
    stream must not keep the request's database connection while it waits: it is handed
    back first."""
    still = still_signed_in(request)
    release_request_connection()
    stream = events(
        generation_id=generation_id,
        version=version,
        last_event_id=last_event_id,
        snapshot=snapshot,
        still_signed_in=still,
    )
    return event_response(StreamingHttpResponse(stream))


def last_event_id(value: str | None) -> int | None:
    """A client's `Last-Event-ID` (or the status page's `?v=`): a version, or None.
    Raises ValueError for anything else."""
    if value is None or not value.strip():
        return None
    if not value.strip().isdigit():
        raise ValueError(value)
    return int(value)


def event_response[ResponseT: HttpResponseBase](response: ResponseT) -> ResponseT:
    """The headers of every event stream answer (and of its 204)."""
    response["Content-Type"] = CONTENT_TYPE
    response["Cache-Control"] = "no-cache"
    # nginx buffers proxied answers by default; an event stream must pass at once.
    response["X-Accel-Buffering"] = "no"
    return response


def short_answer(
    *, row: status_reads.GenerationRow, last_event_id: int | None, url: Callable[[str], Any]
) -> bytes | None:
    """The WSGI answer: the state if it moved since `last_event_id`; None when a final
    state was already delivered (answered 204: the browser stops reconnecting)."""
    if row.version == last_event_id:
        return None if row.status in Generation.FINAL_STATUSES else retry_field()
    return retry_field() + event_bytes(row, url=url)
