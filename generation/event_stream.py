"""`GET /api/generations/{id}/events`: a generation's changes as Server-Sent Events.

The stream sends `retry:` first (how long a browser waits before reconnecting), then an
event at once with the current state (unless `Last-Event-ID` already names it), then an
event each time the generation's version moves (generation/live.py wakes it), with a
comment line every LIVE_HEARTBEAT_SECONDS so proxies keep the connection open. Each event's
`id` is the version and its `data` the Generation exactly as `GET /api/generations/{id}`
answers it (same schema, same encoder). It ends after sending a final state, or after
LIVE_STREAM_SECONDS (the browser reconnects with `Last-Event-ID` and misses nothing).
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
from ninja.responses import NinjaJSONEncoder

from stefna.accounts.models import User
from stefna.errors import NotFound

from . import live, selectors, status_reads
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


class _Snapshot(NamedTuple):
    version: int
    status: str
    event: bytes | None  # None when `version` is the one already sent


def _snapshot(*, user: User, generation_id: uuid.UUID, sent: int | None, url: UrlMaker) -> _Snapshot | None:
    """The generation's state, with its event already encoded: on the status thread, so
    the event loop, which writes every answer and every event of this process, only
    writes the bytes."""
    try:
        row = status_reads.generation_status_row(user=user, generation_id=generation_id)
    except NotFound:
        return None
    return _Snapshot(row.version, row.status, None if row.version == sent else event_bytes(row, url=url))


async def events(
    *, user: User, generation_id: uuid.UUID, version: int, last_event_id: int | None, url: UrlMaker
) -> AsyncIterator[bytes]:
    """The event stream of one of `user`'s generations, whose version was `version` when
    its ownership was checked. Holds no thread and no database connection while it waits."""
    yield retry_field()
    deadline = time.monotonic() + settings.LIVE_STREAM_SECONDS
    sent = last_event_id
    with live.hub().watch(generation_id, version=version) as watch:
        while True:
            if watch.version is None or sent is None or watch.version != sent:
                snapshot = await selectors.run_on_status_connection(
                    _snapshot, user=user, generation_id=generation_id, sent=sent, url=url
                )
                if snapshot is None:
                    return  # deleted meanwhile
                if snapshot.event is not None:
                    yield snapshot.event
                    sent = snapshot.version
                if snapshot.status in Generation.FINAL_STATUSES:
                    return
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                if await watch.wait(min(settings.LIVE_HEARTBEAT_SECONDS, remaining)):
                    break
                yield b": keep-alive\n\n"


def short_answer(
    *, row: status_reads.GenerationRow, last_event_id: int | None, url: Callable[[str], Any]
) -> bytes | None:
    """The WSGI answer: the state if it moved since `last_event_id`; None when a final
    state was already delivered (answered 204: the browser stops reconnecting)."""
    if row.version == last_event_id:
        return None if row.status in Generation.FINAL_STATUSES else retry_field()
    return retry_field() + event_bytes(row, url=url)
