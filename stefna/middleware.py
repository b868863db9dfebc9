"""Middleware that runs around every request: its id, its log line and its metrics.

Both classes work in sync and async stacks, so an async view (`/api/generate-image`)
is not pushed onto a thread just to pass through them.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.core.signals import request_finished
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponseBase

from stefna import metrics
from stefna.logging_json import current_request, current_request_id

request_logger = logging.getLogger("stefna.request")

REQUEST_ID_HEADER = "X-Request-ID"
# What we accept from a trusted proxy: the ids nginx ($request_id), load balancers and
# tracing systems make. Anything else is replaced, so a log line can't be forged or bloated.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class _SyncAndAsync:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        state = self.before(request)
        response = None
        try:
            response = self.get_response(request)
        finally:
            self.after(request, response, state)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        state = self.before(request)
        response = None
        try:
            response = await self.get_response(request)  # type: ignore[misc]
        finally:
            self.after(request, response, state)
        return response  # type: ignore[return-value]

    def before(self, request: HttpRequest) -> Any:
        raise NotImplementedError

    def after(self, request: HttpRequest, response: HttpResponseBase | None, state: Any) -> None:
        raise NotImplementedError


def incoming_request_id(request: HttpRequest) -> str:
    """The proxy's id when a trusted proxy sent one (TRUSTED_PROXY_COUNT > 0), else a new one.

    Without a trusted proxy the header is whatever the client typed, so it is ignored.
    """
    return request_id_from(request.headers.get(REQUEST_ID_HEADER, ""))


def request_id_from(offered: str) -> str:
    """`offered` (an X-Request-ID header) when a trusted proxy sent it, else a new id."""
    offered = offered.strip()
    if getattr(settings, "TRUSTED_PROXY_COUNT", 0) > 0 and _VALID_REQUEST_ID.match(offered):
        return offered
    return uuid.uuid4().hex


class RequestIdMiddleware(_SyncAndAsync):
    """Gives each request an id (`request.request_id`, the `X-Request-ID` response header
    and every log line written while it is served) and logs one line when it ends."""

    def before(self, request: HttpRequest) -> Any:
        request_id = incoming_request_id(request)
        request.request_id = request_id  # type: ignore[attr-defined]
        # Cleared when the response is closed (request_finished below), not here: Django
        # logs 4xx/5xx answers (`django.request`) after the middleware chain returns.
        current_request_id.set(request_id)
        current_request.set(request)
        return time.perf_counter()

    def after(self, request: HttpRequest, response: HttpResponseBase | None, state: Any) -> None:
        status = response.status_code if response is not None else 500
        if response is not None:
            response[REQUEST_ID_HEADER] = request.request_id  # type: ignore[attr-defined]
        request_logger.info(
            "%s %s %s",
            request.method,
            request.path,
            status,
            extra={
                "method": request.method,
                "path": request.path,
                "route": metrics.route_of(request),
                "status": status,
                "duration_ms": round((time.perf_counter() - state) * 1000, 1),
            },
        )


@receiver(request_finished, dispatch_uid="stefna.middleware.forget_request")
def forget_request(**kwargs: Any) -> None:
    """Leave the request: log lines from here on carry no request id or user."""
    # A sync server reuses its threads: the next log line outside a request must not
    # carry the last request's id. (Under ASGI each request has its own context anyway.)
    current_request_id.set(None)
    current_request.set(None)


class MetricsMiddleware(_SyncAndAsync):
    """Counts requests by route and status and times them (see stefna/metrics.py)."""

    def before(self, request: HttpRequest) -> Any:
        return time.perf_counter()

    def after(self, request: HttpRequest, response: HttpResponseBase | None, state: Any) -> None:
        metrics.observe_request(
            request,
            status=response.status_code if response is not None else 500,
            seconds=time.perf_counter() - state,
        )
