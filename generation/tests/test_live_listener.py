"""The live hub's PostgreSQL listener when its connection fails (generation/live.py).

The listener's connection goes through a proxy (tests/pg_proxy.py) that can refuse it (a
database that is down) or black-hole it (a server gone without a RST) while every other
connection of the app goes through untouched. A stream's wait is the hub's `Watch`: woken
with the new version by a notification or by the polling fallback, with None after the
listener reconnects (`wake_all`), so a test can tell which one told it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.db import connections

from generation import status_thread
from generation.live import Hub
from generation.models import Generation
from tests.pg_proxy import PostgresProxy, proxy_in_front_of_the_database

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]

# Every wait is bounded, so a listener that never wakes a stream fails the test.
WAIT = 5.0


@pytest.fixture
def listener_proxy(fast_live) -> Iterator[PostgresProxy]:
    """Every new connection of this test goes through the proxy; only the listener's
    ("stefna-live") is ever refused or black-holed."""
    with proxy_in_front_of_the_database(target="stefna-live") as proxy:
        try:
            yield proxy
        finally:
            # Its connection came through the proxy: close it while the proxy still forwards.
            status_thread.generation_status_close_connection()


def run[T](scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    # On a thread of its own: a browser test earlier on this xdist worker leaves
    # Playwright's event loop running on the main thread, where asyncio.run refuses.
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, scenario()).result(timeout=60)


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(int(WAIT / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting until {what}")


async def change(generation: Generation, **changes: Any) -> int:
    """A write committed on another thread, as the worker makes it; its new version."""

    def write() -> int:
        try:
            Generation.objects.filter(pk=generation.pk).update(**changes)
            return Generation.objects.get(pk=generation.pk).version
        finally:
            connections.close_all()

    return await asyncio.to_thread(write)


def current_version(generation: Generation) -> int:
    return Generation.objects.get(pk=generation.pk).version


def test_a_stream_opened_in_an_outage_nobody_watched_through_is_polled(running, listener_proxy, settings):
    # The listener goes down while no stream watches, for longer than the idle time, and a
    # stream opens while it is still down: the polling fallback must be running for it.
    settings.LIVE_LISTENER_IDLE_SECONDS = 0.2
    settings.LIVE_HEARTBEAT_SECONDS = 5.0  # the listener stays up between the watches
    version = current_version(running)

    async def scenario() -> tuple[bool, int | None, int]:
        hub = Hub()
        with hub.watch(running.pk, version=version):
            await until(lambda: hub.listening, "the listener is up")
        listener_proxy.mode = "refuse"  # the database is down for the listener from now on
        listener_proxy.cut_targets()
        await until(lambda: not hub.listening, "the listener noticed")
        await asyncio.sleep(settings.LIVE_LISTENER_IDLE_SECONDS + 10 * settings.LIVE_POLL_SECONDS)
        with hub.watch(running.pk, version=version) as watch:
            moved = await change(running, queue_position=7)
            return await watch.wait(WAIT), watch.version, moved

    woken, seen, moved = run(scenario)

    assert woken, "a stream opened during the outage heard nothing: nothing polled for it"
    assert seen == moved


def test_a_listener_whose_connection_hangs_gives_way_to_polling(running, listener_proxy, settings):
    # The server vanishes without a RST: the keep-alive's answer never comes. The listener
    # must give up on it, count itself down (polling covers its streams) and reconnect.
    settings.LIVE_LISTENER_TIMEOUT_SECONDS = 0.5
    version = current_version(running)

    async def scenario() -> tuple[bool, int | None, int]:
        hub = Hub()
        with hub.watch(running.pk, version=version) as watch:
            await until(lambda: hub.listening, "the listener is up")
            assert await watch.wait(WAIT)  # its (re)connect's "look again" (`wake_all`)
            listener_proxy.mode = "black_hole"
            moved = await change(running, queue_position=7)  # its NOTIFY is lost in the hole
            return await watch.wait(WAIT), watch.version, moved

    woken, seen, moved = run(scenario)

    assert woken, "the listener waits for ever on a hung connection and nothing polls"
    assert seen == moved


def test_a_notification_that_arrives_with_the_keep_alive_s_answer_is_dispatched_at_once(
    running, listener_proxy, settings
):
    # The keep-alive's answer and a NOTIFY reach the listener in one read: libpq parses
    # both while the answer is read, and the socket has nothing left to wake the wait for
    # notifications. It must be dispatched then, not at the next heartbeat.
    settings.LIVE_HEARTBEAT_SECONDS = 2.0
    version = current_version(running)

    async def scenario() -> tuple[bool, int | None, int]:
        hub = Hub()
        with hub.watch(running.pk, version=version) as watch:
            await until(lambda: hub.listening, "the listener is up")
            assert await watch.wait(WAIT)  # its connect's "look again" (`wake_all`)
            listener_proxy.mode = "hold"
            # (SELECT's command tag: the keep-alive was answered, and held.)
            await until(lambda: b"SELECT 1\0" in listener_proxy.held(), "the keep-alive was answered")
            moved = await change(running, queue_position=7)
            await until(lambda: b"stefna_generation" in listener_proxy.held(), "its NOTIFY came")
            listener_proxy.release()
            return await watch.wait(settings.LIVE_HEARTBEAT_SECONDS / 2), watch.version, moved

    woken, seen, moved = run(scenario)

    assert woken, "the notification waited in libpq's buffer for the next heartbeat"
    assert seen == moved
