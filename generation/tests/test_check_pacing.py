"""Status checks paced by each model's learned time (services/pace.py): one check just
before a job is likely done, then often near it, backing off while queued or far past."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.utils import timezone

from generation.models import Attempt, Generation
from generation.providers import ProviderState
from generation.registry import FAST_SDXL_I2I, GHIBLIFY
from generation.services import pace
from generation.services.pace import LEAD_SECONDS, NEAR_SECONDS, expected_latency, next_check_delay
from generation.tests.factories import AttemptFactory, GenerationFactory
from generation.tests.pipeline_helpers import run_worker, start_generation
from presets.tests.factories import PresetFactory

pytestmark = pytest.mark.django_db

IN_QUEUE, IN_PROGRESS = ProviderState.IN_QUEUE, ProviderState.IN_PROGRESS


@pytest.fixture(autouse=True)
def rhythm(settings):
    # The production rhythm (the test default of 0 makes every job due at once).
    settings.FAL_POLL_INTERVAL_SECONDS = 1
    settings.FAL_POLL_MAX_INTERVAL_SECONDS = 2
    pace.forget_latencies()
    yield
    pace.forget_latencies()


def _history(model: str, seconds: list[float]) -> None:
    """Succeeded attempts of `model` that took `seconds` each, from submission to completion."""
    generation = GenerationFactory(model_chain=[model])
    start = timezone.now() - dt.timedelta(minutes=10)
    for n, duration in enumerate(seconds):
        started = start + dt.timedelta(seconds=10 * n)
        attempt = AttemptFactory.create(
            generation=generation, model=model, finished_at=started + dt.timedelta(seconds=duration)
        )
        Attempt.objects.filter(pk=attempt.pk).update(started_at=started)  # (auto_now_add)


def test_a_models_time_is_learned_from_its_recent_successes():
    _history(FAST_SDXL_I2I, [3.8, 3.9, 4.0, 4.0, 4.0, 4.0, 4.1, 4.1, 4.2, 6.0])
    _history(GHIBLIFY, [20.0] * 5)

    fast = expected_latency(FAST_SDXL_I2I)

    assert fast.early == pytest.approx(3.9) and fast.late == pytest.approx(6.0)
    assert expected_latency(GHIBLIFY).early == pytest.approx(20.0)
    assert expected_latency("fal-ai/never-used").early == pace.DEFAULT_EXPECTED_SECONDS


def test_the_next_check_lands_just_before_the_expected_finish_then_often_then_backs_off():
    _history(FAST_SDXL_I2I, [3.75] * 5 + [4.25] * 5)  # times that spread: the full beat
    assert expected_latency(FAST_SDXL_I2I).lead == LEAD_SECONDS

    # Long before: one check, shortly before the finish (within the 2-s rhythm).
    assert next_check_delay(model=FAST_SDXL_I2I, state=IN_PROGRESS, elapsed=0.5) == 2.0
    assert next_check_delay(model=FAST_SDXL_I2I, state=IN_PROGRESS, elapsed=2.5) == pytest.approx(
        3.75 - LEAD_SECONDS - 2.5
    )
    # Near it: often.
    assert next_check_delay(model=FAST_SDXL_I2I, state=IN_PROGRESS, elapsed=3.9) == NEAR_SECONDS
    assert next_check_delay(model=FAST_SDXL_I2I, state=IN_PROGRESS, elapsed=5.0) == NEAR_SECONDS
    # Far past it: backing off, up to the rhythm the UI promises.
    assert NEAR_SECONDS < next_check_delay(model=FAST_SDXL_I2I, state=IN_PROGRESS, elapsed=7.0) < 2.0
    assert next_check_delay(model=FAST_SDXL_I2I, state=IN_PROGRESS, elapsed=60.0) == 2.0
    # Still in fal's queue when it would be done: its run is still to come.
    assert next_check_delay(model=FAST_SDXL_I2I, state=IN_QUEUE, elapsed=3.9) == pytest.approx(3.75 / 4)


def test_a_model_whose_times_hardly_spread_is_watched_closer_and_later():
    """Every job takes 4 s: the close watch starts 0.2 s before and looks every 0.1 s, so
    the result is seen within a tenth of a second, for two calls before the finish as
    with a model whose times spread."""
    _history(FAST_SDXL_I2I, [4.0] * 10)
    expected = expected_latency(FAST_SDXL_I2I)
    assert expected.beat == pace.TIGHT_NEAR_SECONDS and expected.lead == pytest.approx(0.2)

    checks = _checks(FAST_SDXL_I2I, until=4.0)

    assert checks[-1] - 4.0 <= pace.TIGHT_NEAR_SECONDS + 1e-9
    assert len([at for at in checks if 4.0 - expected.lead - 1e-9 <= at < 4.0 - 1e-9]) == 2
    assert len(checks) <= 5


def test_a_slow_model_is_checked_rarely_until_it_is_likely_done():
    _history(GHIBLIFY, [30.0] * 10)

    checks = []
    elapsed = 0.0
    while elapsed < 30.0:  # fal finishes at 30 s: the first check at or after it sees the result
        elapsed += next_check_delay(model=GHIBLIFY, state=IN_PROGRESS, elapsed=elapsed)
        checks.append(elapsed)

    # A check every 2 s up to shortly before the expected finish, then a few close ones:
    # the result is seen within a quarter of a second of fal finishing.
    assert checks[-1] - 30.0 <= NEAR_SECONDS
    assert len(checks) <= 18
    assert sum(1 for at in checks if at >= 30.0 - LEAD_SECONDS) <= 3


def test_the_worker_schedules_the_next_check_near_the_expected_finish(user, fake_fal):
    _history(FAST_SDXL_I2I, [4.0] * 10)
    fake_fal.manual = True
    generation = start_generation(user, PresetFactory(model_chain=[FAST_SDXL_I2I]))
    with time_machine.travel(timezone.now(), tick=False) as clock:
        run_worker(rounds=1)  # submitted: first check before the finish, within the rhythm
        generation.refresh_from_db()
        assert (generation.next_check_at - timezone.now()).total_seconds() == pytest.approx(2.0, abs=0.01)

        fake_fal.advance(steps=2)  # fal is running it
        clock.shift(dt.timedelta(seconds=2))
        run_worker(rounds=1)
        generation.refresh_from_db()
        attempt = generation.attempts.get()
        assert attempt.status == Attempt.Status.RUNNING
        elapsed = (timezone.now() - attempt.started_at).total_seconds()
        expected = 4.0 - expected_latency(FAST_SDXL_I2I).lead - elapsed
        assert (generation.next_check_at - timezone.now()).total_seconds() == pytest.approx(expected, abs=0.06)

        # Fal finishes; the close check sees it and records when it saw it, not when the copy ended.
        fake_fal.advance(steps=1)
        clock.shift(dt.timedelta(seconds=expected))
        seen = timezone.now()
        run_worker(generation)

    assert generation.status == Generation.Status.SUCCEEDED
    attempt.refresh_from_db()
    assert attempt.finished_at == seen


def test_jobs_still_in_falls_queue_are_rescheduled_together(user, fake_fal, django_assert_max_num_queries):
    _history(FAST_SDXL_I2I, [4.0] * 10)
    fake_fal.manual = True
    preset = PresetFactory(model_chain=[FAST_SDXL_I2I])
    generations = [start_generation(user, preset, prompt=f"harbour {n}") for n in range(5)]
    with time_machine.travel(timezone.now(), tick=False) as clock:
        run_worker(rounds=1)
        clock.shift(dt.timedelta(seconds=2))
        from generation import services

        expected_latency(FAST_SDXL_I2I)  # (learned already: no query for it below)
        # All five unchanged in fal's queue: one claim, one read of the attempts, one UPDATE.
        with django_assert_max_num_queries(8):
            services.generation_poll_due(limit=50)
    due = {g.next_check_at for g in Generation.objects.filter(pk__in=[g.pk for g in generations])}
    assert len(due) == 1


def _checks(model: str, *, until: float) -> list[float]:
    """When a job of `model` still in progress is checked, from its submission up to `until`."""
    checks, elapsed = [], 0.0
    while elapsed < until:
        elapsed += next_check_delay(model=model, state=IN_PROGRESS, elapsed=elapsed)
        checks.append(elapsed)
    return checks


def test_with_webhooks_checks_keep_the_rhythm_and_stay_clear_of_the_callback(settings):
    """fal calls back when a job is done: a check that saw COMPLETED first would copy the
    result a second time. Checks keep the UI's 2-s rhythm, look just before the close
    watch would start, then not again until the callback is a second overdue."""
    _history(FAST_SDXL_I2I, [4.0] * 10)
    closely_watched = _checks(FAST_SDXL_I2I, until=4.0)
    settings.FAL_WEBHOOK_BASE_URL = "https://stefna.example"

    checks = _checks(FAST_SDXL_I2I, until=9.0)

    quiet_from, quiet_until = 4.0 - expected_latency(FAST_SDXL_I2I).lead, 4.0 + pace.CALLBACK_GRACE_SECONDS
    assert checks[:3] == pytest.approx([2.0, quiet_from, quiet_until])
    assert not [at for at in checks if quiet_from < at < quiet_until]
    assert all(later - earlier <= 2.0 + 1e-9 for earlier, later in zip([0.0, *checks], checks, strict=False))
    # Fewer calls before the finish than the close watch without webhooks makes.
    assert len([at for at in checks if at <= 4.0]) < len(closely_watched)


def test_with_webhooks_a_model_whose_times_vary_widely_is_still_checked_on_the_rhythm(settings):
    _history(GHIBLIFY, [3.0] * 3 + [20.0] * 7)  # the quiet stretch would be far longer than 2 s
    settings.FAL_WEBHOOK_BASE_URL = "https://stefna.example"

    checks = _checks(GHIBLIFY, until=30.0)

    gaps = [later - earlier for earlier, later in zip([0.0, *checks], checks, strict=False)]
    assert max(gaps) <= 2.0 + 1e-9
    assert min(gaps) >= NEAR_SECONDS - 1e-9
