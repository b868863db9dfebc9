"""GET /api/generations/{id}/events: Server-Sent Events, driven through the production ASGI
application in-process (stefna.asgi), reading each chunk as the app sends it.

Changes are made the way the pipeline makes them (UPDATEs on another thread, committed);
the stream learns of them through generation/live.py: LISTEN/NOTIFY on PostgreSQL,
polling the versions on SQLite (both run here, whichever DATABASE_URL is).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections

from generation.models import Generation
from generation.tests.factories import MediaFactory
from stefna.asgi import application
from tests.asgi import http_scope, request_then_leave

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fast_live")]

# Every wait below is bounded, so a broken stream fails the test instead of hanging it.
WAIT = 10.0


class Stream:
    """One request to the ASGI app; `next_event()` reads up to the next SSE event."""

    def __init__(self, path: str, headers: dict[str, str], *, query: str = "") -> None:
        self.path, self.headers, self.query = path, headers, query
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.disconnect = asyncio.Event()
        self.status = 0
        self.response_headers: dict[str, str] = {}
        self.buffer = b""
        self.comments = 0
        self.ended = False

    async def __aenter__(self) -> Stream:
        scope = http_scope(self.path, query=self.query, headers=self.headers)
        receive = request_then_leave(self.disconnect)
        self.task = asyncio.create_task(application(scope, receive, self.messages.put))
        start = await asyncio.wait_for(self.messages.get(), WAIT)
        assert start["type"] == "http.response.start"
        self.status = start["status"]
        self.response_headers = {key.decode().lower(): value.decode() for key, value in start["headers"]}
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.disconnect.set()
        await asyncio.wait_for(self.task, WAIT)

    async def _more(self) -> bool:
        if self.ended:
            return False
        message = await asyncio.wait_for(self.messages.get(), WAIT)
        self.buffer += message.get("body", b"")
        if not message.get("more_body", False):
            self.ended = True
        return True

    async def next_block(self) -> str | None:
        while b"\n\n" not in self.buffer:
            if not await self._more():
                return None
        block, self.buffer = self.buffer.split(b"\n\n", 1)
        return block.decode()

    async def next_event(self) -> dict[str, Any] | None:
        """The next event (`id`, `data` parsed); comments and `retry` are counted and skipped."""
        while True:
            block = await self.next_block()
            if block is None:
                return None
            fields: dict[str, str] = {}
            for line in block.split("\n"):
                if line.startswith(":"):
                    self.comments += 1
                    continue
                name, _, value = line.partition(": ")
                fields[name] = value
            if "data" in fields:
                return {"id": int(fields["id"]), "data": json.loads(fields["data"])}

    async def rest(self) -> str:
        while await self._more():
            pass
        return self.buffer.decode()


def run[T](scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(scenario())


def events_url(generation: Generation) -> str:
    return f"/api/generations/{generation.pk}/events"


@pytest.fixture
def bearer(api_token) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_token}"}


def update(generation: Generation, **changes: Any) -> None:
    Generation.objects.filter(pk=generation.pk).update(**changes)


async def change(function: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """A write committed on another thread, as the worker makes it; the thread's connection
    is closed after it (PostgreSQL cannot drop the test database while one is open)."""

    def write() -> None:
        try:
            function(*args, **kwargs)
        finally:
            connections.close_all()

    await sync_to_async(write, thread_sensitive=False)()


def test_the_first_event_is_the_current_state_exactly_as_the_api_answers_it(api_client, running, bearer):
    expected = api_client.get(f"/api/generations/{running.pk}").json()

    async def scenario() -> dict[str, Any] | None:
        async with Stream(events_url(running), bearer) as stream:
            assert stream.status == 200
            assert stream.response_headers["content-type"].startswith("text/event-stream")
            assert stream.response_headers["cache-control"] == "no-cache"
            assert await stream.next_block() == "retry: 1000"
            return await stream.next_event()

    event = run(scenario)

    assert event["data"] == expected
    assert event["id"] == Generation.objects.get(pk=running.pk).version


def test_each_change_is_an_event_and_the_final_state_ends_the_stream(running, bearer):
    async def scenario() -> list[dict[str, Any] | None]:
        async with Stream(events_url(running), bearer) as stream:
            seen = [await stream.next_event()]
            await change(update, running, queue_position=3)
            seen.append(await stream.next_event())
            await change(MediaFactory, generation=running)
            await change(update, running, status=Generation.Status.SUCCEEDED)
            while (event := await stream.next_event()) is not None:
                seen.append(event)
            assert stream.ended
            return seen

    seen = run(scenario)

    assert seen[1]["data"]["queue_position"] == 3
    assert seen[1]["id"] > seen[0]["id"]
    assert seen[-1]["data"]["status"] == "succeeded"
    assert len(seen[-1]["data"]["images"]) == 1
    # Versions only go up, one event per version at most.
    ids = [event["id"] for event in seen]
    assert ids == sorted(set(ids))


class HeldCancel:
    """The owner's cancel through the API, on another thread, held at any write of the
    generation made after its transaction (none, when the stop writes all at once) until
    `release()`: meanwhile a stream reads what is committed."""

    def __init__(self, client: Any, generation: Generation, bearer: dict[str, str]) -> None:
        self.client, self.generation = client, generation
        client.defaults["HTTP_AUTHORIZATION"] = bearer["Authorization"]
        self.held, self.go_on = threading.Event(), threading.Event()

    def _hold_late_writes(self, execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        late = sql.lstrip().upper().startswith("UPDATE") and not connection.in_atomic_block
        if late and Generation._meta.db_table in sql:
            self.held.set()
            self.go_on.wait(WAIT)
        return execute(sql, params, many, context)

    def _cancel(self) -> int:
        try:
            with connection.execute_wrapper(self._hold_late_writes):
                return self.client.post(f"/api/generations/{self.generation.pk}/cancel").status_code
        finally:
            connections.close_all()

    async def start(self) -> None:
        self.task = asyncio.ensure_future(sync_to_async(self._cancel, thread_sensitive=False)())
        while not self.held.is_set() and not self.task.done():
            await asyncio.sleep(0.01)

    async def release(self) -> int:
        self.go_on.set()
        return await self.task


def test_a_cancel_s_final_state_carries_its_log_line_when_the_stream_ends_on_it(running, bearer, client):
    """The stream ends on the first final state it reads, and a reconnect naming that
    state gets 204: whatever a stop wrote after it (its log line, "credits refunded")
    would never reach the watcher. So the final state must be whole when it commits."""
    cancel = HeldCancel(client, running, bearer)

    async def scenario() -> tuple[list[dict[str, Any]], int, int]:
        async with Stream(events_url(running), bearer) as stream:
            first = await stream.next_event()
            assert first is not None
            seen = [first]
            await cancel.start()
            try:
                while (event := await stream.next_event()) is not None:
                    seen.append(event)
            finally:
                canceled = await cancel.release()
        final = seen[-1]
        async with Stream(events_url(running), {**bearer, "Last-Event-ID": str(final["id"])}) as again:
            await again.rest()
        return seen, canceled, again.status

    seen, canceled, reconnect_status = run(scenario)

    assert canceled == 200
    final = seen[-1]["data"]
    assert final["status"] == "canceled"
    assert any("refunded" in line["message"] for line in final["logs"]), final["logs"]
    assert reconnect_status == 204  # nothing changed after the final state the stream sent


def test_internal_updates_send_no_event_only_heartbeats(running, bearer, settings):
    settings.LIVE_STREAM_SECONDS = 1.5

    async def scenario() -> tuple[list[dict[str, Any] | None], int]:
        async with Stream(events_url(running), bearer) as stream:
            seen = [await stream.next_event()]
            await change(update, running, next_check_at=running.created_at)
            while (event := await stream.next_event()) is not None:
                seen.append(event)
            return seen, stream.comments

    seen, heartbeats = run(scenario)

    assert len(seen) == 1  # the bound ended the stream; the lease update woke nobody
    assert heartbeats >= 2


def test_resuming_with_the_current_version_sends_nothing_until_it_moves(running, bearer):
    version = Generation.objects.get(pk=running.pk).version

    async def scenario() -> dict[str, Any] | None:
        async with Stream(events_url(running), {**bearer, "Last-Event-ID": str(version)}) as stream:
            await asyncio.sleep(0.5)
            await change(update, running, current_model="fal-ai/fast-sdxl")
            return await stream.next_event()

    event = run(scenario)

    assert event["id"] == version + 1  # the first event is the change, not a repeat
    assert event["data"]["model"] == "fal-ai/fast-sdxl"


def test_resuming_after_a_missed_change_sends_it_at_once(running, bearer):
    version = Generation.objects.get(pk=running.pk).version
    update(running, queue_position=1)

    async def scenario() -> dict[str, Any] | None:
        async with Stream(events_url(running), {**bearer, "Last-Event-ID": str(version)}) as stream:
            return await stream.next_event()

    event = run(scenario)

    assert event["id"] == version + 1 and event["data"]["queue_position"] == 1


def test_a_finished_generation_sends_its_state_once_then_204(running, bearer):
    update(running, status=Generation.Status.FAILED, error_code="timeout")

    async def scenario() -> tuple[dict[str, Any], str, int]:
        async with Stream(events_url(running), bearer) as stream:
            event = await stream.next_event()
            rest = await stream.rest()
        assert event is not None, "a finished generation sends its state"
        async with Stream(events_url(running), {**bearer, "Last-Event-ID": str(event["id"])}) as again:
            await again.rest()
            return event, rest, again.status

    event, rest, reconnect_status = run(scenario)

    assert event["data"]["status"] == "failed"
    assert rest == ""
    assert reconnect_status == 204  # EventSource stops reconnecting


def test_events_speak_the_request_language_though_made_on_the_status_thread(running, bearer):
    # CONTRACT: API messages follow Accept-Language. The events are encoded on the status
    # thread, which is not the request's: the request's language must travel with them.
    update(running, status=Generation.Status.CANCELED, error_code="canceled", error_message="Canceled")

    async def scenario() -> dict[str, Any] | None:
        async with Stream(events_url(running), {**bearer, "Accept-Language": "id"}) as stream:
            return await stream.next_event()

    event = run(scenario)

    assert event is not None
    assert event["data"]["error"] == {"code": "canceled", "message": "Dibatalkan"}


def test_someone_elses_generation_is_404_and_no_sign_in_is_401(running, other_user):
    from stefna.accounts.services import api_token_create

    _, stranger_token = api_token_create(user=other_user, name="stranger")

    async def scenario() -> tuple[int, str, int]:
        async with Stream(events_url(running), {"Authorization": f"Bearer {stranger_token}"}) as stranger:
            body = await stranger.rest()
        async with Stream(events_url(running), {}) as anonymous:
            await anonymous.rest()
        return stranger.status, body, anonymous.status

    status, body, anonymous = run(scenario)

    assert status == 404 and json.loads(body)["code"] == "not_found"
    assert anonymous == 401


def test_a_malformed_last_event_id_is_422(running, bearer):
    async def scenario() -> tuple[int, str]:
        async with Stream(events_url(running), {**bearer, "Last-Event-ID": "abc"}) as stream:
            return stream.status, await stream.rest()

    status, body = run(scenario)

    assert status == 422 and json.loads(body)["code"] == "invalid_input"


@pytest.mark.postgres_only
def test_waiting_streams_hold_no_database_connection_each(running, bearer, settings):
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: counts the server's backends (pg_stat_activity)")

    def backends() -> int:
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                )
                return cursor.fetchone()[0]
        finally:
            connections.close_all()

    async def scenario() -> int:
        streams = [Stream(events_url(running), bearer) for _ in range(6)]
        for stream in streams:
            await stream.__aenter__()
            await stream.next_event()
        await asyncio.sleep(0.3)
        count = await sync_to_async(backends, thread_sensitive=False)()
        for stream in streams:
            stream.disconnect.set()
        return count

    # Six open streams: the test's own connection, the shared status thread's, the one
    # LISTEN connection, and the pool's spare ones (DB_POOL_MIN_SIZE); not one per stream.
    assert run(scenario) <= 3 + settings.DATABASES["default"]["OPTIONS"].get("pool", {}).get("min_size", 0)


def test_under_wsgi_the_answer_is_short_and_the_browser_reconnects(running, api_client):
    # Django's test Client is WSGI: no long stream there, the current state and a retry.
    first = api_client.get(events_url(running))
    assert first.status_code == 200
    assert first["Content-Type"].startswith("text/event-stream")
    body = first.content.decode()
    assert body.startswith("retry: 1000\n\n")
    version = Generation.objects.get(pk=running.pk).version
    assert f"id: {version}\n" in body

    unchanged = api_client.get(events_url(running), headers={"Last-Event-ID": str(version)})
    assert unchanged.content.decode() == "retry: 1000\n\n"

    update(running, status=Generation.Status.SUCCEEDED)
    final = api_client.get(events_url(running), headers={"Last-Event-ID": str(version)})
    assert '"status": "succeeded"' in final.content.decode()
    done = api_client.get(events_url(running), headers={"Last-Event-ID": str(version + 1)})
    assert done.status_code == 204


# --- PostgreSQL: NOTIFY and the listener ---------------------------------------------------


def _require_postgres() -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: NOTIFY/LISTEN (SQLite polls the versions instead)")


@pytest.mark.postgres_only
def test_a_committed_change_notifies_its_id_and_new_version(running):
    _require_postgres()
    import psycopg

    from generation.live import CHANNEL
    from stefna.db import listen_params

    with psycopg.connect(**listen_params(application_name="stefna-test"), autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        update(running, queue_position=4)
        Generation.objects.filter(pk=running.pk).update(next_check_at=running.created_at)  # no notify
        payloads = [notify.payload for notify in listener.notifies(timeout=2.0)]

    version = Generation.objects.get(pk=running.pk).version
    assert payloads == [f"{running.pk}:{version}"]


@pytest.mark.postgres_only
def test_a_dropped_listener_misses_nothing_and_reconnects(running, bearer):
    _require_postgres()

    def listeners() -> list[int]:
        from django.db import connection

        try:
            with connection.cursor() as cursor:
                # This test database's listeners only: each xdist worker has its own
                # database, and killing another worker's listener failed its test.
                cursor.execute(
                    "SELECT pid FROM pg_stat_activity "
                    "WHERE application_name = 'stefna-live' AND datname = current_database()"
                )
                return [pid for (pid,) in cursor.fetchall()]
        finally:
            connections.close_all()

    def terminate(pids: list[int]) -> None:
        from django.db import connection

        try:
            with connection.cursor() as cursor:
                for pid in pids:
                    cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        finally:
            connections.close_all()

    async def scenario() -> tuple[dict[str, Any] | None, list[int], list[int]]:
        async with Stream(events_url(running), bearer) as stream:
            await stream.next_event()
            # The listener connects in the background: the first event may come first.
            for _ in range(100):
                before = await sync_to_async(listeners, thread_sensitive=False)()
                if before:
                    break
                await asyncio.sleep(0.1)
            assert before, "no LISTEN connection while a stream is open"
            await sync_to_async(terminate, thread_sensitive=False)(before)  # as a database restart does
            await change(update, running, queue_position=9)
            event = await stream.next_event()
            for _ in range(100):  # the listener comes back (with a growing delay, first 0.5 s)
                after = await sync_to_async(listeners, thread_sensitive=False)()
                if after and set(after).isdisjoint(before):
                    break
                await asyncio.sleep(0.1)
            return event, before, after

    event, before, after = run(scenario)

    assert event["data"]["queue_position"] == 9
    assert after and set(after).isdisjoint(before)


def test_a_revoked_token_s_stream_ends_within_a_heartbeat_and_its_reconnect_is_401(running, user, bearer):
    # fast_live: a heartbeat is 0.3 s, the stream's age limit 20 s.
    from stefna.accounts.models import ApiToken

    version = Generation.objects.get(pk=running.pk).version

    async def scenario() -> tuple[list[dict[str, Any]], bool, int]:
        async with Stream(events_url(running), {**bearer, "Last-Event-ID": str(version)}) as stream:
            await change(lambda: ApiToken.objects.filter(user=user).update(revoked_at=running.created_at))
            # A change after the revocation is not sent: the stream asks again first.
            await asyncio.sleep(0.4)
            await change(update, running, queue_position=2)
            seen = []
            while (event := await stream.next_event()) is not None:
                seen.append(event)
            ended = stream.ended
        async with Stream(events_url(running), {**bearer, "Last-Event-ID": str(version)}) as again:
            await again.rest()
            return seen, ended, again.status

    seen, ended, reconnect_status = run(scenario)

    assert ended  # long before the 20-s bound: run() would otherwise time out reading
    assert seen == []
    assert reconnect_status == 401


def test_a_live_token_s_stream_keeps_going_past_its_checks(running, bearer):
    version = Generation.objects.get(pk=running.pk).version

    async def scenario() -> dict[str, Any] | None:
        async with Stream(events_url(running), {**bearer, "Last-Event-ID": str(version)}) as stream:
            await asyncio.sleep(1.0)  # three heartbeats, each with a check
            await change(update, running, queue_position=4)
            return await stream.next_event()

    event = run(scenario)

    assert event is not None and event["data"]["queue_position"] == 4
