"""The worker's wake-up (worker.WakeListener): a job made due in the web wakes the poller
at once on PostgreSQL, and only once the change is committed."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from django.db import connection, transaction
from django.utils import timezone

from generation import services
from generation.registry import FAST_SDXL_I2I
from generation.tests.pipeline_helpers import start_generation
from generation.worker import WakeListener
from presets.tests.factories import PresetFactory


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
