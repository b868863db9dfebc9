"""Log records that say which request and which user they belong to.

`RequestContextFilter` stamps every record with `request_id` and `user_id` from the
request being served (contextvars, so it follows the request across threads and
`sync_to_async`); the worker binds the id of the request that asked for the job it is
working on (`request_id_bound`), so its lines can be followed back to the web's. `JsonFormatter` writes one JSON object a line (`LOG_FORMAT=json`)
with time, level, logger, message, those two ids and every `extra=` field the code
attached. The formatter is python-json-logger's: a maintained one escapes and encodes
what a hand-rolled one forgets (exceptions, non-ASCII, objects that are not JSON).
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

# The request being served in this context (set by stefna.middleware.RequestIdMiddleware).
current_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("stefna_request_id", default=None)
current_request: contextvars.ContextVar[Any] = contextvars.ContextVar("stefna_request", default=None)


@contextmanager
def request_id_bound(request_id: str | None) -> Iterator[None]:
    """Log lines (and Sentry events) written inside carry `request_id`, and only inside.

    For work done later on a request's behalf (the worker on a generation): set for one
    job at a time and restored after it, so that a pool thread going on to another job,
    or to one no request asked for (None), never carries this one's id.
    """
    token = current_request_id.set(request_id or None)
    try:
        yield
    finally:
        current_request_id.reset(token)


def _user_id(request: Any) -> Any:
    """The signed-in user's id, if the request already knows who it is.

    Never triggers the session lookup itself: a log line must not cost a query, and
    in async code the lookup would be a synchronous database call on the event loop.
    """
    if request is None:
        return None
    auth = getattr(request, "auth", None)  # django-ninja's authenticated caller
    user = auth if getattr(auth, "pk", None) is not None else request.__dict__.get("_cached_user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user.pk


class RequestContextFilter(logging.Filter):
    """Adds request_id and user_id to every record (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = current_request_id.get()
        if not hasattr(record, "user_id"):
            record.user_id = _user_id(current_request.get())
        return True


def _json_default(value: Any) -> Any:
    """Dates as ISO 8601; anything else json cannot encode (UUIDs, Decimals, models) as str()."""
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


class JsonFormatter(_BaseJsonFormatter):
    """One JSON object a line: time (ISO 8601, UTC), level, logger, message, request_id,
    user_id, process (which gunicorn worker or task worker), then every extra field;
    exceptions as `exc_info` text."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("fmt", "%(levelname)s %(name)s %(message)s %(request_id)s %(user_id)s %(process)d")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        kwargs.setdefault("timestamp", "time")
        kwargs.setdefault("json_ensure_ascii", False)
        kwargs.setdefault("json_default", _json_default)
        super().__init__(*args, **kwargs)
