"""An ASGI HTTP scope, and a client's `receive`, for driving stefna.asgi in-process (tests
of the handler and of the event stream)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any


def http_scope(path: str, *, query: str = "", headers: dict[str, str] | None = None) -> dict[str, Any]:
    """A GET for `path` as uvicorn would hand it over, from 127.0.0.1 to testserver."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver")]
        + [(key.lower().encode(), value.encode()) for key, value in (headers or {}).items()],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }


def request_then_leave(leave: asyncio.Event) -> Callable[[], Awaitable[dict[str, Any]]]:
    """An ASGI `receive`: the request (no body), then a disconnect once `leave` is set."""
    asked = False

    async def receive() -> dict[str, Any]:
        nonlocal asked
        if not asked:
            asked = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await leave.wait()
        return {"type": "http.disconnect"}

    return receive
