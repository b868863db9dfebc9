"""Django's ASGI handler, with a synchronous view served in one trip to a thread.

Django's own handler runs the middleware chain in async mode. Every middleware written
as `MiddlewareMixin` (all of Django's, whitenoise's) then sends each of its hooks to a
thread and back, the first one that is sync-only adapts the rest of the chain back to
the event loop, the view goes to a thread again, and `request_started` and
`request_finished` send each receiver to a thread. For a plain sync view that is about
ten crossings between the event loop and threads, and at the crowd bench's load
(bench/crowd.py) they cost more CPU than the views themselves.

So a request whose view is synchronous (all but `/api/generate-image`) is served here by
a second, fully synchronous copy of the same middleware chain, in one call on one of
WEB_THREADS reused threads: `request_started`, the chain, the view and, for an answer in
memory or a file (read whole in that same call, as Django would read it anyway, up to
FILE_BLOCK_BYTES; a larger one is read a block at a time on those threads as the loop
sends them, so a process holds one block per download, not whole photos),
`request_finished`, which hands the database connection back at once. The event loop
then writes the bytes. A live stream (the event stream: a sync view answering with an
async iterator) is written by the loop as Django does, watching for a disconnect, and
closed on a thread afterwards. Views marked `@own_thread` (the health check) run on
threads of their own, never queued behind other requests, and a bare GET of a view marked
`@reuse_answer(seconds)` (the health check again) is answered from the event loop with
that view's answer of less than `seconds` ago, when there is one.

Requests for async views (the studio's wait, which holds no thread while it waits) go to
Django's handler unchanged. Which way a path goes is decided by resolving it once
(cached); a path that doesn't resolve takes the sync chain, which answers its 404.
Either way gives the same answer; only the cost differs.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from typing import Any, Literal, cast

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.http import FileResponse, HttpResponseBase, StreamingHttpResponse
from django.urls import Resolver404, get_resolver, set_script_prefix

from stefna.middleware import REQUEST_ID_HEADER, request_id_from

type Lane = Literal["async", "own", "shared"]
type Ending = Literal["closed", "blocks", "stream"]

_clock = time.monotonic


@dataclass(frozen=True)
class _Answer:
    """A view's last answer, kept to be sent again (see `reuse_answer`)."""

    at: float
    status: int
    headers: list[tuple[bytes, bytes]]  # without X-Request-ID: each answer gets its own
    body: bytes


def _yield_to_the_loop() -> None:
    """Run as each request thread starts: lower its CPU priority (WEB_THREAD_NICENESS).

    The event loop accepts every connection, answers the health check, and writes every
    answer and every live event; the request threads run views. When the CPUs are busy,
    the loop thread waits its turn behind them, so a saturated node answers its health
    probe late. With the request threads niced by 10 the loop goes first, but every view
    waits, fal's webhook included, so results reach the screen later: off by default
    (the figures are in bench/README.md). A niced thread runs at once on an idle CPU: this only decides who goes
    first on busy ones.
    On Linux a nice value belongs to a thread (who=0 is the calling thread); elsewhere it
    is the whole process's, loop included, so it is left alone there. Raising niceness
    needs no privilege, so it works in any container.
    """
    niceness = settings.WEB_THREAD_NICENESS
    if niceness <= 0 or sys.platform != "linux":
        return
    try:
        os.setpriority(os.PRIO_PROCESS, 0, min(19, os.getpriority(os.PRIO_PROCESS, 0) + niceness))
    except OSError:  # a sandbox that forbids it: serve at the same priority as before
        pass


class _Processed(Exception):
    """Ends the task group once the answer is written (as Django's handler does)."""


class SyncFirstASGIHandler(ASGIHandler):
    def __init__(self) -> None:
        super().__init__()  # the async chain, for async views
        self._sync = BaseHandler()
        self._sync.load_middleware(is_async=False)
        # Django would start a thread for each request (a ThreadSensitiveContext per
        # request) and stop it afterwards; at the crowd bench's load starting and joining
        # them cost about a sixth of the web's CPU. These threads are reused instead, and
        # they bound how many requests run Python at once in this process (more only
        # contend for the GIL). A database connection belongs to its thread (Django), so
        # a request still gets its own connection for as long as it runs.
        self._threads = ThreadPoolExecutor(
            max_workers=settings.WEB_THREADS, thread_name_prefix="web-request", initializer=_yield_to_the_loop
        )
        # Views marked @own_thread (the health check) skip that queue: a load balancer
        # pulls a node whose probe is slow, and a busy node is not a broken one.
        self._own_threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="web-own-thread")
        self._executors = {"shared": self._threads, "own": self._own_threads}
        self._recent: dict[str, _Answer] = {}  # path -> last answer, for @reuse_answer views

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path_info = _path_info(scope)
        lane, reuse_for = _route(settings.ROOT_URLCONF, path_info)
        if lane == "async":
            await super().handle(scope, receive, send)
            return
        # A bare GET of a @reuse_answer view (the health check) answered a moment ago gets
        # that answer again from the loop: no thread, no middleware, no query.
        reusable = reuse_for > 0 and scope["method"] == "GET" and not scope.get("query_string")
        if reusable and (recent := self._recent.get(path_info)) and _clock() - recent.at < reuse_for:
            await _send_again(recent, scope, send)
            return
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        # The request runs in a copy of this task's context, as sync_to_async would run
        # it, but called directly: asgiref's wrapper (thread-sensitivity bookkeeping, a
        # closure whose annotations are evaluated on every call, the context copied back
        # and forth) cost about a twentieth of the web's CPU at the crowd bench's load.
        context = contextvars.copy_context()
        loop = asyncio.get_running_loop()
        with closing(body_file):
            response, ending = await loop.run_in_executor(
                self._executors[lane], context.run, self._respond, scope, body_file
            )
            if ending == "closed":
                # request_finished was sent on the thread; only the bytes are left to write.
                if reusable and not response.cookies and not response.streaming:
                    self._recent[path_info] = _keep(response)
                await self.send_response(response, send)
                return
            try:
                try:
                    async with asyncio.TaskGroup() as group:
                        # A client gone stops a live stream, and a large file's reads.
                        group.create_task(self.listen_for_disconnect(receive))
                        # The stream runs in the request's context (its request id for
                        # the logs, its error-reporting scope).
                        group.create_task(self._send_then_stop(response, send), context=context)
                except* (_Processed, RequestAborted):
                    pass
            finally:
                if ending == "stream":
                    await loop.run_in_executor(self._threads, context.run, response.close)

    async def _send_then_stop(self, response: HttpResponseBase, send: Any) -> None:
        await self.send_response(response, send)
        raise _Processed

    def _respond(self, scope: dict[str, Any], body_file: Any) -> tuple[HttpResponseBase, Ending]:
        """The answer, and how it ends: "closed" (in memory, request_finished sent), "blocks"
        (a large file read as it is sent; closed too) or "stream" (a live stream, closed
        by the caller once written)."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self._sync.get_response(request)
            response._handler_class = self.__class__  # type: ignore[attr-defined]
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size
        assert response is not None
        if isinstance(response, FileResponse) and (block_reads := _large_file(response)) is not None:
            # A large file (a photo of up to 15 MB): its blocks are read on this pool's
            # threads as the loop writes them, so a process holds one block per download
            # rather than every file in full. The request itself ends here (its database
            # connection goes back); the blocks come from a duplicate of the file's
            # descriptor, which outlives the response's own.
            response.streaming_content = block_reads(self._threads)
            response.close()
            return response, "blocks"
        # The same test as `response.streaming` (only StreamingHttpResponse and its
        # subclasses set it), in a form mypy can narrow.
        elif isinstance(response, StreamingHttpResponse) and not response.is_async:
            # A small file: Django would read a sync iterator whole on a thread anyway (with
            # a warning), so read it here in the same trip and hand the loop the bytes.
            # Not async, so a plain iterator of bytes (the stubs can't tie the two).
            parts = list(cast(Iterator[bytes], response.streaming_content))
            response.streaming_content = _replay(parts)
        elif response.streaming:
            return response, "stream"
        response.close()
        return response, "closed"


async def _replay(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


# A file this size or smaller is read whole in the request's trip to a thread (one hop);
# a larger one in blocks of this size, each read on a thread as the loop sends the last.
FILE_BLOCK_BYTES = 1024 * 1024


def _large_file(response: FileResponse) -> Callable[[Any], AsyncIterator[bytes]] | None:
    """For a FileResponse of a real file with a Content-Length over FILE_BLOCK_BYTES
    (Django's static `serve`, our media view), a function that reads exactly that many
    bytes from where the file stands, in blocks, on the given executor. Anything else (a
    BytesIO, whitenoise's slice of a file for a range) keeps the one-trip read."""
    if response.is_async or response.file_to_stream is None or not response.has_header("Content-Length"):
        return None
    try:
        descriptor = response.file_to_stream.fileno()
        start = response.file_to_stream.tell()
        length = int(response["Content-Length"])
    except (AttributeError, OSError, ValueError):  # not a real file (a BytesIO, a closed file)
        return None
    if length <= FILE_BLOCK_BYTES:
        return None
    duplicate = os.dup(descriptor)

    async def blocks(executor: Any) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        offset, end = start, start + length
        try:
            while offset < end:
                size = min(FILE_BLOCK_BYTES, end - offset)
                block = await loop.run_in_executor(executor, os.pread, duplicate, size, offset)
                if not block:  # the file was cut short meanwhile: what there is, no more
                    return
                offset += len(block)
                yield block
        finally:
            os.close(duplicate)

    return blocks


def _path_info(scope: dict[str, Any]) -> str:
    # As ASGIRequest computes it.
    path = scope["path"]
    script_name = get_script_prefix(scope).rstrip("/")
    if script_name and (path.startswith(script_name + "/") or path == script_name):
        return path[len(script_name) :]
    return path


def _keep(response: HttpResponseBase) -> _Answer:
    headers = [
        (name.encode("ascii"), value.encode("latin1"))
        for name, value in response.items()
        if name.lower() != REQUEST_ID_HEADER.lower()
    ]
    return _Answer(at=_clock(), status=response.status_code, headers=headers, body=response.content)  # type: ignore[attr-defined]


async def _send_again(answer: _Answer, scope: dict[str, Any], send: Any) -> None:
    offered = next((value for name, value in scope["headers"] if name == b"x-request-id"), b"")
    request_id = request_id_from(offered.decode("latin1"))
    headers = [*answer.headers, (REQUEST_ID_HEADER.encode("ascii"), request_id.encode("ascii"))]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


@functools.lru_cache(maxsize=4096)
def _route(urlconf: str, path_info: str) -> tuple[Lane, float]:
    """Which handler serves a path, and for how long a @reuse_answer view's answer holds."""
    try:
        match = get_resolver(urlconf).resolve(path_info)
    except Resolver404:
        return "shared", 0.0  # the sync chain answers the 404
    except Exception:
        return "async", 0.0  # let Django's own handler meet whatever this is
    if iscoroutinefunction(match.func):
        return "async", 0.0
    reuse_for = float(getattr(match.func, "reuse_answer_for", 0.0))
    return ("own" if getattr(match.func, "serve_on_own_thread", False) else "shared"), reuse_for


def own_thread[ViewT: Callable[..., Any]](view: ViewT) -> ViewT:
    """Serve this (sync) view on threads of its own under ASGI, never queued behind other
    requests. For cheap views that must answer while the site is busy: the health check."""
    view.serve_on_own_thread = True  # type: ignore[attr-defined]
    return view


def reuse_answer[ViewT: Callable[..., Any]](seconds: float) -> Callable[[ViewT], ViewT]:
    """Under ASGI, answer a bare GET of this view (no query string) with its answer of less
    than `seconds` ago, sent from the event loop by each web process: no thread, no
    middleware, no database. For a probe that monitors call many times a second (the
    health check), so a busy node answers at once and a probe storm costs one check a
    second. Such answers are not logged or counted per request; each gets its own
    X-Request-ID. Answers that set cookies or stream are never reused. Only for a view
    whose answer does not depend on who asks (it is kept per path)."""

    def mark(view: ViewT) -> ViewT:
        view.reuse_answer_for = seconds  # type: ignore[attr-defined]
        return view

    return mark
