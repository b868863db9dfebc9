"""Request bodies are bounded before anything reads them, and refused politely.

A body declared larger than the caller may send is answered 413 at once, with the
API's JSON error under /api/ and a readable page elsewhere. Anonymous callers (no
session cookie, no bearer token that checks out) may send ANONYMOUS_MAX_BODY_BYTES:
sign-in forms and webhooks are small, so a stranger cannot make us read 200 MB.
Signed-in callers may send MAX_REQUEST_BODY_BYTES (a photo at the upload limit, as
base64 JSON or multipart).

After the answer is written the rest of the body is read and thrown away, up to
DRAIN_MAX_BYTES and DRAIN_MAX_SECONDS, before the server closes the connection (what
nginx's lingering close does). Clients that send the whole body before reading the
answer (Python's urllib, many SDKs) otherwise get a broken pipe instead of the 413.
The drain runs from the response's close(), which WSGI servers call after sending.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
from collections.abc import Callable
from importlib import import_module
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse, parse_cookie
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext as _

from stefna.errors import error_body
from stefna.i18n import language_from_accept_header, supported_language

logger = logging.getLogger("stefna.body_limits")

CHUNK = 256 * 1024


def _declared_length(request: HttpRequest) -> int:
    try:
        return max(0, int(request.META.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0  # Django then reads no body at all


def _may_send_large_bodies(request: HttpRequest) -> bool:
    """A signed-in session or a valid API token. Only asked for bodies over the anonymous bound."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return True
    return _bearer_checks_out(request.META.get("HTTP_AUTHORIZATION", ""))


def _bearer_checks_out(authorization: str) -> bool:
    """Whether an Authorization header carries a valid API token (a database lookup)."""
    if not authorization.lower().startswith("bearer "):
        return False
    from stefna.accounts.services import api_token_authenticate

    return api_token_authenticate(authorization[7:].strip()) is not None


def _drain(request: HttpRequest, declared: int, *, anonymous: bool) -> None:
    stream: Any = getattr(request, "_stream", None)
    if stream is None:
        return
    # Strangers get no more reading than their bound: their client may see a broken pipe.
    budget = min(declared, settings.ANONYMOUS_MAX_BODY_BYTES if anonymous else settings.DRAIN_MAX_BYTES)
    deadline = time.monotonic() + settings.DRAIN_MAX_SECONDS
    # gunicorn hands us its socket: a client that declares a body and sends nothing must
    # not hold the worker until gunicorn's own timeout kills it.
    sock = request.META.get("gunicorn.socket")
    read = 0
    try:
        while read < budget:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            if sock is not None:
                sock.settimeout(remaining)
            chunk = stream.read(min(CHUNK, budget - read))
            if not chunk:
                break
            read += len(chunk)
    except OSError:
        pass  # timed out, or the client went away: nothing left to be polite to
    logger.info("refused body drained: %s of %s bytes", read, declared)


def _too_large_message(*, limit: int, anonymous: bool) -> str:
    """In the active language."""
    limit_mb = f"{limit / (1024 * 1024):g}"
    if anonymous:
        return _("The request is too large: without signing in a request may carry at most %(mb)s MB.") % {
            "mb": limit_mb
        }
    return _("The request is too large: the limit is %(mb)s MB. Please send a smaller photo.") % {"mb": limit_mb}


def _too_large(request: HttpRequest, *, limit: int, anonymous: bool) -> HttpResponse:
    message = _too_large_message(limit=limit, anonymous=anonymous)
    if request.path.startswith("/api/"):
        return JsonResponse(error_body("image_too_large", message, {"max_bytes": limit}), status=413)
    return render(request, "413.html", {"message": message}, status=413)


class BodyLimitMiddleware:
    """Must come after AuthenticationMiddleware (it asks who is sending)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        declared = _declared_length(request)
        if declared > settings.ANONYMOUS_MAX_BODY_BYTES:
            anonymous = not _may_send_large_bodies(request)
            limit = settings.ANONYMOUS_MAX_BODY_BYTES if anonymous else settings.MAX_REQUEST_BODY_BYTES
            if declared > limit:
                response = _too_large(request, limit=limit, anonymous=anonymous)
                response._resource_closers.append(lambda: _drain(request, declared, anonymous=anonymous))  # type: ignore[attr-defined]
                return response
        return self.get_response(request)


class BoundedBodyASGI:
    """The same bound in front of Django's ASGI handler, which reads a whole body (to a
    temporary file) before any middleware runs.

    A body over the anonymous bound gets the signed-in bound only when its bearer token
    or session cookie checks out (one lookup on a thread, asked only of such bodies):
    a made-up header must not buy a stranger 20 MB of our reading. Over the bound the
    body is drained first, within the same byte and time bounds, and then answered 413:
    an ASGI server stops reading once the answer is sent, so the order is the other way
    round from WSGI.
    The 413 says `Connection: close`, so nothing past the drain bound is ever read.

    A body sent in chunks (`Transfer-Encoding: chunked`) declares no length: it is read
    here, into a spooled file, up to the same bound (and refused the same way past it),
    then handed on with the `Content-Length` it turned out to have. Without that, Django
    read any amount of it, and its form parser, which needs the length, saw no fields.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        headers = {name.lower(): value for name, value in scope.get("headers", [])}
        if b"content-length" not in headers and b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            await self._chunked(scope, receive, send, headers)
            return
        try:
            declared = int(headers.get(b"content-length", b"0") or 0)
        except ValueError:
            declared = 0
        if declared <= settings.ANONYMOUS_MAX_BODY_BYTES:
            await self.app(scope, receive, send)
            return
        cookies, looks_signed_in, limit, drain = await _bounds(headers)
        if declared <= limit:
            await self.app(scope, receive, send)
            return
        await _drain_asgi(receive, budget=min(declared, drain))
        await _refuse(scope, send, headers, cookies, limit=limit, looks_signed_in=looks_signed_in)

    async def _chunked(self, scope: dict[str, Any], receive: Any, send: Any, headers: dict[bytes, bytes]) -> None:
        cookies, looks_signed_in, limit, drain = await _bounds(headers)
        body = tempfile.SpooledTemporaryFile(max_size=settings.FILE_UPLOAD_MAX_MEMORY_SIZE)  # noqa: SIM115
        try:
            size = 0
            while True:
                message = await receive()
                if message.get("type") != "http.request":
                    return  # the client went away: nothing to answer
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    if message.get("more_body"):
                        await _drain_asgi(receive, budget=max(0, drain - size))
                    await _refuse(scope, send, headers, cookies, limit=limit, looks_signed_in=looks_signed_in)
                    return
                body.write(chunk)
                if not message.get("more_body"):
                    break
            body.seek(0)
            sized = [(name, value) for name, value in scope.get("headers", []) if name.lower() != b"transfer-encoding"]
            scope = {**scope, "headers": [*sized, (b"content-length", str(size).encode())]}
            await self.app(scope, _replay(body, size, receive), send)
        finally:
            body.close()


async def _bounds(headers: dict[bytes, bytes]) -> tuple[dict[str, str], bool, int, int]:
    """The request's cookies, whether its caller checks out as signed in, the body bound
    that buys, and how much of an over-bound body is read away before the 413."""
    cookies = parse_cookie(headers.get(b"cookie", b"").decode("latin-1"))
    looks_signed_in = await _vouched_for(headers, cookies)
    limit = settings.MAX_REQUEST_BODY_BYTES if looks_signed_in else settings.ANONYMOUS_MAX_BODY_BYTES
    return cookies, looks_signed_in, limit, settings.DRAIN_MAX_BYTES if looks_signed_in else limit


def _replay(body: Any, size: int, receive: Any) -> Any:
    """`receive` for the app: the spooled body (`size` bytes) in blocks, then the client's
    own messages (a disconnect)."""
    done = False

    async def replayed() -> dict[str, Any]:
        nonlocal done
        if done:
            return await receive()
        block = body.read(CHUNK)
        done = body.tell() >= size
        return {"type": "http.request", "body": block, "more_body": not done}

    return replayed


async def _refuse(
    scope: dict[str, Any],
    send: Any,
    headers: dict[bytes, bytes],
    cookies: dict[str, str],
    *,
    limit: int,
    looks_signed_in: bool,
) -> None:
    """The 413, once what the client sent was drained."""
    is_api = scope.get("path", "").startswith("/api/")
    with translation.override(_language_before_django(headers, cookies, is_api=is_api)):
        message = _too_large_message(limit=limit, anonymous=not looks_signed_in)
    if is_api:
        body = json.dumps(error_body("image_too_large", message, {"max_bytes": limit}))
        content_type = b"application/json"
    else:
        body, content_type = message, b"text/plain; charset=utf-8"
    data = body.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            # Connection: close makes the server hang up once the answer is written
            # (uvicorn closes when h11 says MUST_CLOSE); without it uvicorn keeps
            # reading and discarding the rest of the body to reuse the connection, so
            # a stranger could still make us read 200 MB after our bounded drain.
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(data)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _vouched_for(headers: dict[bytes, bytes], cookies: dict[str, str]) -> bool:
    """Whether the request carries a real API token or a signed-in session."""
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    session_key = cookies.get(settings.SESSION_COOKIE_NAME, "")
    if not authorization and not session_key:
        return False
    return await sync_to_async(_vouched_for_on_a_thread, thread_sensitive=False)(authorization, session_key)


def _vouched_for_on_a_thread(authorization: str, session_key: str) -> bool:
    from django.contrib.auth import SESSION_KEY

    try:
        if _bearer_checks_out(authorization):
            return True
        if session_key:
            store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
            return bool(store.get(SESSION_KEY))
        return False
    except Exception:
        # The database is down: let the request through to Django, which answers 503
        # (stefna/unavailable.py) rather than a misleading 413; its own bound still holds.
        logger.warning("body bound: could not check the sender", exc_info=True)
        return True
    finally:
        connections.close_all()  # this thread is the executor's, not a request's


def _language_before_django(headers: dict[bytes, bytes], cookies: dict[str, str], *, is_api: bool) -> str:
    """The language stefna/i18n.py would choose, as far as it can be told without the
    session (not read for a refused body, so an account's saved choice is not known): the
    API follows Accept-Language; pages the language cookie, else Accept-Language."""
    accept = headers.get(b"accept-language", b"").decode("latin-1")
    if not is_api:
        chosen = supported_language(cookies.get(settings.LANGUAGE_COOKIE_NAME))
        if chosen:
            return chosen
    return language_from_accept_header(accept)


async def _drain_asgi(receive: Any, *, budget: int) -> None:
    deadline = time.monotonic() + settings.DRAIN_MAX_SECONDS
    read = 0
    while read < budget:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            message = await asyncio.wait_for(receive(), timeout=remaining)
        except TimeoutError:
            break
        if message.get("type") != "http.request":
            break
        read += len(message.get("body", b""))
        if not message.get("more_body"):
            break
