"""An ASGI HTTP scope for driving stefna.asgi in-process (tests of the handler and of
the event stream)."""

from __future__ import annotations

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
