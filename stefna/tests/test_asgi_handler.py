"""stefna/asgi_handler.py: under ASGI a sync view is served in one trip to a reused thread
(request_started, the whole middleware chain, the view and request_finished on it), a
file is read in that same trip, an async view still goes through Django's own handler,
the health check has threads of its own, and its answer is sent again from the loop for
a second. A large file is read in blocks on those threads as the loop sends them.

Driven through the production ASGI application (stefna.asgi) in-process, with a test
URLconf beside the real one.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import warnings
from typing import Any

import pytest
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import include, path

from stefna.asgi import application
from stefna.asgi_handler import own_thread
from tests.asgi import http_scope, request_then_leave

pytestmark = pytest.mark.django_db(transaction=True)


def sync_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "thread": threading.current_thread().name,
            # Set by RequestIdMiddleware, which ran in sync mode on this same thread.
            "request_id": bool(getattr(request, "request_id", "")),
        }
    )


async def async_view(request: HttpRequest) -> JsonResponse:
    asyncio.get_running_loop()  # raises unless awaited on the event loop
    return JsonResponse({"thread": threading.current_thread().name})


def file_view(request: HttpRequest) -> FileResponse:
    import io

    return FileResponse(io.BytesIO(b"x" * 200_000), content_type="application/octet-stream")


LARGE = bytes(range(256)) * (14 * 1024)  # 3.5 MB, no two neighbouring blocks alike


def large_file_view(request: HttpRequest) -> FileResponse:
    """A file on disk over FILE_BLOCK_BYTES, whose name is gone before it is sent (as a
    result made private moves to a new name while someone downloads it)."""
    import tempfile

    with tempfile.NamedTemporaryFile(delete=False) as spool:
        spool.write(LARGE)
    stream = open(spool.name, "rb")  # noqa: SIM115 - the response closes it
    os.unlink(spool.name)
    return FileResponse(stream, content_type="application/octet-stream")


def large_file_from_view(request: HttpRequest) -> FileResponse:
    """The large file from byte 1,000 on: the answer is what the file holds from there."""
    import tempfile

    spool = tempfile.TemporaryFile()  # noqa: SIM115 - the response closes it
    spool.write(LARGE)
    spool.seek(1000)
    return FileResponse(spool, content_type="application/octet-stream")


def stream_view(request: HttpRequest) -> StreamingHttpResponse:
    async def parts() -> Any:
        for number in range(3):
            yield f"part {number}\n".encode()

    return StreamingHttpResponse(parts(), content_type="text/plain")


def failing_view(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom")


def niceness_view(request: HttpRequest) -> JsonResponse:
    # On Linux who=0 is the calling thread: the nice value of the thread serving this.
    return JsonResponse({"niceness": os.getpriority(os.PRIO_PROCESS, 0)})


@own_thread
def own_thread_niceness_view(request: HttpRequest) -> JsonResponse:
    return niceness_view(request)


def stream_context_view(request: HttpRequest) -> StreamingHttpResponse:
    from stefna.logging_json import current_request_id

    async def parts() -> Any:
        # Written by the loop after the view returned: its log lines still carry the id.
        # (request_id is set by RequestIdMiddleware, an attribute HttpRequest doesn't declare.)
        yield f"{current_request_id.get()}|{request.request_id}".encode()  # type: ignore[attr-defined]

    return StreamingHttpResponse(parts(), content_type="text/plain")


urlpatterns = [
    path("t/sync", sync_view),
    path("t/stream-context", stream_context_view),
    path("t/niceness", niceness_view),
    path("t/niceness-own", own_thread_niceness_view),
    path("t/async", async_view),
    path("t/file", file_view),
    path("t/large-file", large_file_view),
    path("t/large-file-from", large_file_from_view),
    path("t/stream", stream_view),
    path("t/fail", failing_view),
    path("", include("stefna.urls")),
]


@pytest.fixture(autouse=True)
def _test_urls(settings):
    settings.ROOT_URLCONF = __name__


@pytest.fixture(autouse=True)
def _no_kept_answers():
    # The application is one per process, as in production: forget other tests' answers.
    application.app._recent.clear()
    yield
    application.app._recent.clear()


@pytest.fixture
def signals_seen():
    seen: list[tuple[str, str]] = []

    def started(**kwargs: Any) -> None:
        seen.append(("started", threading.current_thread().name))

    def finished(**kwargs: Any) -> None:
        seen.append(("finished", threading.current_thread().name))

    request_started.connect(started, dispatch_uid="test-asgi-started")
    request_finished.connect(finished, dispatch_uid="test-asgi-finished")
    yield seen
    request_started.disconnect(dispatch_uid="test-asgi-started")
    request_finished.disconnect(dispatch_uid="test-asgi-finished")


@pytest.fixture
def reads(monkeypatch) -> list[tuple[int, int, str]]:
    """Every block read of a large file, in order: (descriptor, length, thread name)."""
    seen: list[tuple[int, int, str]] = []
    real_pread = os.pread

    def pread(descriptor: int, length: int, offset: int) -> bytes:
        seen.append((descriptor, length, threading.current_thread().name))
        return real_pread(descriptor, length, offset)

    monkeypatch.setattr(os, "pread", pread)
    return seen


def call(
    url: str, *, seen: list[tuple[str, str]] | None = None, app: Any = application
) -> tuple[int, dict[str, str], bytes]:
    """One GET through the ASGI app; notes in `seen` when the answer's first bytes went out."""

    async def scenario() -> tuple[int, dict[str, str], bytes]:
        sent: list[dict[str, Any]] = []
        done = asyncio.Event()
        receive = request_then_leave(done)

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and seen is not None:
                seen.append(("sent", threading.current_thread().name))
            sent.append(message)

        path_part, _, query = url.partition("?")
        scope = http_scope(path_part, query=query)
        await asyncio.wait_for(app(scope, receive, send), 10)
        done.set()
        start = sent[0]
        headers = {key.decode().lower(): value.decode() for key, value in start["headers"]}
        return start["status"], headers, b"".join(message.get("body", b"") for message in sent[1:])

    return asyncio.run(scenario())


def test_a_sync_view_runs_with_its_whole_chain_in_one_trip_to_a_reused_thread(signals_seen):
    import json

    status, headers, body = call("/t/sync", seen=signals_seen)
    answer = json.loads(body)
    assert status == 200
    assert answer["thread"].startswith("web-request")
    assert answer["request_id"] is True and headers["x-request-id"]
    # request_started, the view and request_finished on that one thread; request_finished
    # (which hands the database connection back) before the answer is written.
    assert signals_seen == [("started", answer["thread"]), ("finished", answer["thread"]), ("sent", "MainThread")]
    # The thread is kept for the next request, not started anew.
    names = {json.loads(call("/t/sync")[2])["thread"] for _ in range(20)}
    assert names <= {f"web-request_{number}" for number in range(settings.WEB_THREADS)}


def test_an_async_view_is_awaited_by_djangos_own_handler():
    import json

    status, _, body = call("/t/async")
    assert status == 200
    assert json.loads(body)["thread"] == "MainThread"


def test_a_file_is_read_in_the_same_trip_and_sent_whole_without_the_sync_iterator_warning(signals_seen):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Django's "must consume synchronous iterators" warning
        status, headers, body = call("/t/file", seen=signals_seen)
    assert status == 200
    assert body == b"x" * 200_000
    assert headers["content-length"] == "200000"
    assert [event for event, _ in signals_seen] == ["started", "finished", "sent"]


def test_a_large_file_is_read_in_blocks_on_request_threads_as_the_loop_sends_them(signals_seen, reads):
    from stefna.asgi_handler import FILE_BLOCK_BYTES

    status, headers, body = call("/t/large-file", seen=signals_seen)
    assert status == 200
    assert body == LARGE, "whole and in order, though its name was unlinked before it was sent"
    assert headers["content-length"] == str(len(LARGE))
    # The request ended (request_finished: its database connection back) before the
    # first byte went out; the blocks were read after, each on a request thread.
    assert [event for event, _ in signals_seen] == ["started", "finished", "sent"]
    assert [length for _, length, _ in reads] == [FILE_BLOCK_BYTES] * 3 + [len(LARGE) - 3 * FILE_BLOCK_BYTES]
    assert all(thread.startswith("web-request") for _, _, thread in reads)
    # The duplicate descriptor the blocks came from is closed.
    with pytest.raises(OSError):
        os.fstat(reads[0][0])


def test_a_large_file_is_sent_from_where_it_stands_for_exactly_its_length():
    status, headers, body = call("/t/large-file-from")
    assert status == 200
    assert headers["content-length"] == str(len(LARGE) - 1000)
    assert body == LARGE[1000:]


def test_a_large_file_is_sent_while_it_is_read_not_after(reads):
    """One block in memory at a time: the loop writes each block before the next is read."""
    reads_before_each_send: list[int] = []

    async def scenario() -> None:
        async def send(message: dict[str, Any]) -> None:
            if message.get("body"):
                reads_before_each_send.append(len(reads))

        receive = request_then_leave(asyncio.Event())  # the client stays until the answer is whole
        await asyncio.wait_for(application(http_scope("/t/large-file"), receive, send), 10)

    asyncio.run(scenario())
    assert reads_before_each_send[0] == 1, "the first block is sent before the second is read"
    assert len(reads) == 4 and reads_before_each_send == sorted(reads_before_each_send)


def test_a_client_gone_mid_file_stops_the_reads_and_closes_the_file(reads):
    async def scenario() -> None:
        first_block = asyncio.Event()

        async def send(message: dict[str, Any]) -> None:
            if message.get("body"):
                first_block.set()
                await asyncio.sleep(0.01)  # a slow client: the disconnect arrives meanwhile

        receive = request_then_leave(first_block)
        await asyncio.wait_for(application(http_scope("/t/large-file"), receive, send), 10)

    asyncio.run(scenario())
    assert 1 <= len(reads) < 4, "no reading on for a client who left"
    with pytest.raises(OSError):
        os.fstat(reads[0][0])


def test_a_live_stream_is_written_by_the_loop_and_closed_after_it(signals_seen):
    status, headers, body = call("/t/stream", seen=signals_seen)
    assert status == 200
    assert body == b"part 0\npart 1\npart 2\n"
    # Closed (request_finished) only once the stream was written.
    assert [event for event, _ in signals_seen] == ["started", "sent", "finished"]


def test_a_live_stream_runs_in_its_requests_context():
    status, _, body = call("/t/stream-context")
    seen, request_id = body.decode().split("|")
    assert status == 200 and request_id
    assert seen == request_id


def test_a_failing_view_and_an_unknown_path_are_answered_by_the_sync_chain():
    status, _, _ = call("/t/fail")
    assert status == 500
    status, _, body = call("/api/no-such-route")
    assert status == 404
    assert b'"code"' in body


def test_the_health_check_has_threads_of_its_own(signals_seen):
    status, _, body = call("/healthz", seen=signals_seen)
    assert status == 200, body
    assert signals_seen[0][0] == "started" and signals_seen[0][1].startswith("web-own-thread")


def test_a_health_answer_is_sent_again_from_the_loop_for_a_second(signals_seen, monkeypatch):
    import json

    from stefna import asgi_handler

    now = [1000.0]
    monkeypatch.setattr(asgi_handler, "_clock", lambda: now[0])
    status, headers, body = call("/healthz", seen=signals_seen)
    assert status == 200 and json.loads(body)["checks"]["database"] == "up"
    assert [event for event, _ in signals_seen] == ["started", "finished", "sent"]

    # Within the second: the same answer, with no request (no thread, no middleware, no
    # query), and an id of its own.
    signals_seen.clear()
    now[0] += 0.9
    again_status, again_headers, again_body = call("/healthz", seen=signals_seen)
    assert (again_status, again_body) == (status, body)
    assert signals_seen == [("sent", "MainThread")]
    assert again_headers["x-request-id"] and again_headers["x-request-id"] != headers["x-request-id"]
    assert {k: v for k, v in again_headers.items() if k != "x-request-id"} == {
        k: v for k, v in headers.items() if k != "x-request-id"
    }

    # A query string (`?deep=1`) always checks; so does the first probe after the second.
    signals_seen.clear()
    call("/healthz?deep=1", seen=signals_seen)
    assert signals_seen[0][0] == "started"
    signals_seen.clear()
    now[0] += 0.2
    call("/healthz", seen=signals_seen)
    assert signals_seen[0][0] == "started"


def test_other_views_answers_are_never_sent_again(signals_seen):
    call("/t/sync")
    signals_seen.clear()
    call("/t/sync", seen=signals_seen)
    assert signals_seen[0][0] == "started"


@pytest.mark.skipif(sys.platform != "linux", reason="a nice value belongs to a thread only on Linux")
def test_with_web_thread_niceness_request_threads_run_at_a_lower_cpu_priority_than_the_loop(settings):
    import json

    from stefna.asgi_handler import SyncFirstASGIHandler

    settings.WEB_THREAD_NICENESS = 10
    app = SyncFirstASGIHandler()  # its request threads start with this setting
    loop_niceness = os.getpriority(os.PRIO_PROCESS, 0)  # asyncio.run's loop runs on this thread
    expected = min(19, loop_niceness + 10)
    try:
        seen = {json.loads(call("/t/niceness", app=app)[2])["niceness"] for _ in range(2 * settings.WEB_THREADS)}
        assert seen == {expected}
        assert os.getpriority(os.PRIO_PROCESS, 0) == loop_niceness  # the loop's own is untouched
        # The health check's own threads keep the loop's priority: a busy node answers its probe.
        assert json.loads(call("/t/niceness-own", app=app)[2])["niceness"] == loop_niceness
    finally:
        app._threads.shutdown()
        app._own_threads.shutdown()


@pytest.mark.skipif(sys.platform != "linux", reason="a nice value belongs to a thread only on Linux")
def test_by_default_a_request_thread_runs_at_the_loops_priority(settings):
    from stefna.asgi_handler import _yield_to_the_loop

    assert settings.WEB_THREAD_NICENESS == 0  # the default: see the setting for why
    seen: list[int] = []

    def start() -> None:  # as a fresh request thread starts
        _yield_to_the_loop()
        seen.append(os.getpriority(os.PRIO_PROCESS, 0))

    thread = threading.Thread(target=start)
    thread.start()
    thread.join()
    assert seen == [os.getpriority(os.PRIO_PROCESS, 0)]
