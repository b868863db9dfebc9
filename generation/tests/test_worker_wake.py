"""The worker's wake-up (worker.WakeListener): a job made due in the web wakes the poller
at once on PostgreSQL, and only once the change is committed."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from django.db import connection, transaction
from django.utils import timezone

from generation import services
from generation.registry import FAST_SDXL_I2I
from generation.tests.pipeline_helpers import start_generation
from generation.worker import WakeListener
from presets.tests.factories import PresetFactory
from tests.pg_proxy import PostgresProxy, proxy_in_front_of_the_database


def _require_postgres() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: LISTEN/NOTIFY (on SQLite the poller's tick finds new jobs)")


@pytest.fixture
def wake() -> Iterator[threading.Event]:
    """A listening WakeListener's event, cleared of the wake it gives on connecting."""
    _require_postgres()
    event, stop = threading.Event(), threading.Event()
    listener = WakeListener(wake=event, stop=stop)
    listener.start()
    try:
        assert listener.listening.wait(10), "the listener did not connect"
        assert event.wait(5)  # it wakes the poller once on connecting: jobs made due meanwhile
        event.clear()
        yield event
    finally:
        stop.set()
        listener.join(5)  # its connection closed before the test database is dropped


@pytest.mark.django_db(transaction=True)
def test_a_new_generation_wakes_the_worker_when_it_is_committed(wake, user, fake_fal):
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    with transaction.atomic():
        start_generation(user, preset)
        assert not wake.wait(0.3), "woken before the generation was committed"
    assert wake.wait(5)


@pytest.mark.django_db(transaction=True)
def test_a_change_rolled_back_wakes_nobody(wake):
    with transaction.atomic():
        services.workers_wake()
        transaction.set_rollback(True)
    assert not wake.wait(0.5)


@pytest.fixture
def waiting(wake, user, fake_fal):
    """A generation just requested, its wake-up already received."""
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))
    assert wake.wait(5)
    wake.clear()
    return generation


@pytest.mark.django_db(transaction=True)
def test_a_job_a_webhook_made_due_wakes_the_worker(wake, waiting):
    services.generation_release(generation_id=waiting.pk, seconds=0)

    assert wake.wait(5)


@pytest.mark.django_db(transaction=True)
def test_the_worker_handing_a_job_back_for_later_wakes_nobody(wake, waiting):
    services.generation_release(generation_id=waiting.pk, seconds=2)

    assert not wake.wait(0.5)


@pytest.mark.django_db(transaction=True)
def test_a_cancel_wakes_the_worker_for_the_place_it_frees(wake, waiting, user):
    services.generation_cancel(generation_id=waiting.pk, user=user)

    assert wake.wait(5)


@pytest.mark.django_db(transaction=True)
def test_a_webhook_storing_a_result_wakes_the_worker(wake, client, user, fake_fal):
    from generation.models import Attempt
    from generation.tests.pipeline_helpers import run_worker

    fake_fal.manual = True
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))
    run_worker(rounds=1)  # submitted
    attempt = Attempt.objects.get(generation=generation)
    fake_fal.advance(attempt.fal_job_id, steps=3)  # done at fal
    body, headers = fake_fal.webhook_request(attempt.fal_job_id)
    extra = {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items() if k != "Content-Type"}
    wake.clear()

    answer = client.post("/api/fal/webhook", data=body, content_type="application/json", **extra)

    assert answer.json() == {"status": "completed"}
    assert wake.wait(5)
    generation.refresh_from_db()
    assert generation.next_check_at <= timezone.now()  # due: the worker copies the images


# A connection that hangs (a server gone without a RST, a network that drops everything):
# the listener's connection ("stefna-worker") goes through a proxy (tests/pg_proxy.py) that
# can black-hole it while every other connection goes through untouched. While the listener
# counts as up the poller rests up to LISTENING_TICK_SECONDS (0.5 s) between rounds instead
# of 0.1 s, so a listener "up" on a dead connection delays every new job for as long as the
# process lives.


@contextlib.contextmanager
def listener_behind(proxy: PostgresProxy, *, heartbeat: float) -> Iterator[tuple[WakeListener, threading.Event]]:
    event, stop = threading.Event(), threading.Event()
    listener = WakeListener(wake=event, stop=stop, heartbeat=heartbeat)
    listener.start()
    try:
        yield listener, event
    finally:
        stop.set()
        listener.join(5)


def eventually(condition: Callable[[], bool], *, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_wake_listener_whose_connection_hangs_counts_as_down_and_reconnects(settings):
    settings.WORKER_WAKE_TIMEOUT_SECONDS = 0.5
    with (
        proxy_in_front_of_the_database(target="stefna-worker") as proxy,
        listener_behind(proxy, heartbeat=0.2) as (listener, wake),
    ):
        assert listener.listening.wait(10), "the listener did not connect"
        proxy.mode = "black_hole"

        assert eventually(lambda: not listener.listening.is_set(), within=5), (
            "the listener still counts as up on a connection that hangs: the poller keeps its slow tick"
        )
        proxy.mode = "forward"
        assert listener.listening.wait(10), "the listener did not reconnect"
        wake.clear()
        services.workers_wake()
        assert wake.wait(5)


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_wake_listener_whose_connect_hangs_tries_again(settings):
    settings.WORKER_WAKE_TIMEOUT_SECONDS = 0.5
    with proxy_in_front_of_the_database(target="stefna-worker") as proxy:
        proxy.mode = "black_hole"  # its first connect is never answered
        with listener_behind(proxy, heartbeat=0.2) as (listener, _wake):
            time.sleep(0.5)
            proxy.mode = "forward"

            # libpq's connect_timeout is whole seconds, at least 2.
            assert listener.listening.wait(8), "the listener waits out psycopg's 130-s default on a connect that hangs"
