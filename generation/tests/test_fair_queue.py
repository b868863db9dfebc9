"""The fair queue (services/schedule.py): FAL_MAX_CONCURRENT, round robin across users,
queue positions, and fal's 429 lowering the limit for a while."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from credits import ledger
from credits.models import CreditEntry
from generation import services
from generation.models import Attempt, Generation
from generation.registry import FAST_SDXL_I2I, GHIBLIFY
from generation.services import schedule
from generation.services.schedule import Waiting, fair_order
from generation.tests.pipeline_helpers import run_worker, start_generation
from presets.tests.factories import PresetFactory
from stefna.accounts.tests.factories import UserFactory

S = Generation.Status


@pytest.fixture
def one_model(db):
    return PresetFactory(model_chain=[FAST_SDXL_I2I])


def _funded_user(email: str) -> Any:
    user = UserFactory.create(email=email)
    ledger.grant(user=user, amount=200, note="tests")
    return user


def _queue(user: Any, preset: Any, count: int) -> list[Generation]:
    return [start_generation(user, preset, prompt=f"{user.email} {n}") for n in range(count)]


def _statuses(generations: list[Generation]) -> list[str]:
    by_pk = dict(Generation.objects.filter(pk__in=[g.pk for g in generations]).values_list("pk", "status"))
    return [by_pk[g.pk] for g in generations]


def _round() -> None:
    services.generation_poll_due(limit=500)


# --- The order ---------------------------------------------------------------------------


def test_the_fair_order_goes_round_robin_across_users_by_jobs_in_flight():
    at = timezone.now()
    a = [Waiting(f"a{n}", "A", at + dt.timedelta(seconds=n)) for n in range(4)]  # type: ignore[arg-type]
    b = [Waiting(f"b{n}", "B", at + dt.timedelta(seconds=10 + n)) for n in range(2)]  # type: ignore[arg-type]
    c = [Waiting("c0", "C", at + dt.timedelta(seconds=20))]  # type: ignore[arg-type]

    order = fair_order([*a, *b, *c], in_flight={"A": 3, "B": 1})

    # C has nothing in flight, B one, A three; ties go to the older job.
    assert [job.pk for job in order] == ["c0", "b0", "b1", "a0", "a1", "a2", "a3"]
    assert [job.pk for job in fair_order([*a, *b], in_flight={})] == ["a0", "b0", "a1", "b1", "a2", "a3"]


def test_a_light_user_starts_in_the_next_free_slot_after_a_heavy_users_forty(one_model, fake_fal, settings):
    settings.FAL_MAX_CONCURRENT = 4
    settings.RATE_LIMIT_GENERATIONS = (1000, 60)
    fake_fal.manual = True
    heavy, light = _funded_user("heavy@example.com"), _funded_user("light@example.com")
    forty = _queue(heavy, one_model, 40)
    _round()
    assert _statuses(forty)[:4] == [S.RUNNING] * 4 and set(_statuses(forty)[4:]) == {S.QUEUED}

    [one] = _queue(light, one_model, 1)
    _round()
    one.refresh_from_db()
    assert one.status == S.QUEUED and one.queue_position == 1  # next, ahead of 36 older jobs
    assert Generation.objects.filter(status=S.RUNNING).count() == 4

    # One of the heavy user's jobs finishes at fal: the light user's job takes its slot.
    first = forty[0].attempts.get()
    fake_fal.advance(first.fal_job_id, steps=3)
    run_worker(forty[0])
    _round()

    one.refresh_from_db()
    assert forty[0].status == S.SUCCEEDED
    assert one.status == S.RUNNING and one.queue_position is None
    assert Generation.objects.filter(status=S.RUNNING).count() == 4
    assert len(fake_fal.submissions()) == 5
    assert set(_statuses(forty)[4:]) == {S.QUEUED}


def test_each_waiting_job_knows_its_place_in_the_fair_order(one_model, fake_fal, settings):
    settings.FAL_MAX_CONCURRENT = 2
    fake_fal.manual = True
    ann, bob = _funded_user("ann@example.com"), _funded_user("bob@example.com")
    anns = _queue(ann, one_model, 4)
    bobs = _queue(bob, one_model, 2)

    _round()

    # Started: ann's first and bob's first. Then ann's second (older), bob's second, ann's rest.
    positions = dict(Generation.objects.values_list("pk", "queue_position"))
    assert _statuses([anns[0], bobs[0]]) == [S.RUNNING, S.RUNNING]
    assert [positions[g.pk] for g in (anns[1], bobs[1], anns[2], anns[3])] == [1, 2, 3, 4]

    # A cancel moves everyone behind it up, in the next round.
    services.generation_cancel(generation_id=anns[1].pk, user=ann)
    _round()
    positions = dict(Generation.objects.values_list("pk", "queue_position"))
    assert [positions[g.pk] for g in (anns[2], bobs[1], anns[3])] == [1, 2, 3]


def test_positions_are_written_only_for_rows_whose_place_changed(one_model, fake_fal, settings):
    settings.FAL_MAX_CONCURRENT = 1
    fake_fal.manual = True
    user = _funded_user("ann@example.com")
    _queue(user, one_model, 5)
    _round()
    before = dict(Generation.objects.filter(status=S.QUEUED).values_list("pk", "updated_at"))

    schedule.generations_schedule(limit=10)  # nothing changed: nothing written

    assert dict(Generation.objects.filter(status=S.QUEUED).values_list("pk", "updated_at")) == before
    assert sorted(Generation.objects.filter(status=S.QUEUED).values_list("queue_position", flat=True)) == [1, 2, 3, 4]


def test_offline_preview_mode_obeys_the_same_cap(one_model, settings):
    settings.FAL_KEY = ""
    settings.OFFLINE_MODE = True
    settings.FAL_MAX_CONCURRENT = 2
    user = _funded_user("ann@example.com")
    generations = _queue(user, one_model, 5)

    settings.OFFLINE_QUEUE_SECONDS = 60  # the local provider's jobs stay in flight

    _round()

    assert _statuses(generations) == [S.RUNNING, S.RUNNING, S.QUEUED, S.QUEUED, S.QUEUED]
    settings.OFFLINE_QUEUE_SECONDS = 0
    for generation in generations:
        run_worker(generation)
    assert set(_statuses(generations)) == {S.SUCCEEDED}


def test_a_push_from_a_shell_respects_the_cap(one_model, fake_fal, settings):
    settings.FAL_MAX_CONCURRENT = 1
    fake_fal.manual = True
    user = _funded_user("ann@example.com")
    first, second = _queue(user, one_model, 2)
    services.generation_submit(generation_id=first.pk)
    services.generation_submit(generation_id=second.pk)

    assert _statuses([first, second]) == [S.RUNNING, S.QUEUED]
    assert len(fake_fal.submissions()) == 1


# --- Two workers ------------------------------------------------------------------------


@pytest.mark.postgres_only
@pytest.mark.django_db(transaction=True)
def test_two_claimers_together_never_exceed_the_cap(settings, one_model):
    if connection.vendor != "postgresql":
        pytest.skip(
            "PostgreSQL only: SQLite runs one writing transaction at a time (BEGIN IMMEDIATE), so the "
            "two claimers could never overlap and the race would not be exercised"
        )
    settings.FAL_MAX_CONCURRENT = 3
    users = [_funded_user(f"user{n}@example.com") for n in range(3)]
    for user in users:
        _queue(user, one_model, 4)

    for round_number in range(6):
        barrier = threading.Barrier(2)
        claimed: list[list[Any]] = [[], []]

        def claim(number: int, barrier: threading.Barrier = barrier, claimed: list[list[Any]] = claimed) -> None:
            try:
                barrier.wait(10)
                claimed[number] = services.generation_claim_due(limit=50)
            finally:
                connection.close()

        threads = [threading.Thread(target=claim, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not set(claimed[0]) & set(claimed[1])
        assert len(claimed[0]) + len(claimed[1]) == (3 if round_number == 0 else 1)
        assert sum(schedule.slots_taken().values()) == 3
        # One job ends (as if it finished): its slot goes to exactly one claimer next round.
        ending = Generation.objects.filter(status=S.QUEUED, next_check_at__gt=timezone.now()).first()
        assert ending is not None
        Generation.objects.filter(pk=ending.pk).update(status=S.CANCELED, next_check_at=None)


# --- fal's 429 ----------------------------------------------------------------------------


def test_a_429_sends_the_job_back_to_waiting_and_halves_the_limit(user, one_model, fake_fal, settings, caplog):
    settings.FAL_MAX_CONCURRENT = 10
    ledger.ensure_daily_allowance(user=user)
    # (fal-client itself tries twice: two refusals make one for the pipeline.)
    fake_fal.fail_submit(FAST_SDXL_I2I, status=429, times=2)
    generation = start_generation(user, one_model)

    with time_machine.travel(timezone.now(), tick=False) as clock:
        _round()
        generation.refresh_from_db()
        [attempt] = generation.attempts.all()
        assert generation.status == S.QUEUED  # waiting again, not failed
        assert attempt.status == Attempt.Status.SUBMITTING and not attempt.fal_job_id  # not used up
        assert schedule.effective_limit() == 5
        busy_lines = [line for line in generation.logs if "is busy" in line["message"]]
        assert len(busy_lines) == 1
        assert sum("at its limit" in record.getMessage() for record in caplog.records) == 1

        _round()  # nothing starts right after a 429
        generation.refresh_from_db()
        assert generation.status == S.QUEUED

        clock.shift(dt.timedelta(seconds=3))
        run_worker(generation)

    assert generation.status == S.SUCCEEDED
    assert list(generation.attempts.values_list("pk", flat=True)) == [attempt.pk]  # the same attempt
    assert len([line for line in generation.logs if "is busy" in line["message"]]) == 1  # logged once
    assert len(fake_fal.jobs) == 1
    assert CreditEntry.objects.filter(generation=generation, reason="reserve").count() == 1
    assert CreditEntry.objects.filter(generation=generation, reason="capture").count() == 1


def test_a_job_sent_again_after_a_429_gets_its_whole_time_at_fal(one_model, fake_fal, settings):
    # The attempt fal refused waits for its turn again, here for longer than an attempt
    # may take at fal (slots are scarce after the 429). Once fal accepts it, the time it
    # waited with us must not count as time at fal: checked at once, it would be canceled
    # there as timed out, and the generation failed for a model that never failed.
    settings.FAL_MAX_CONCURRENT = 2  # a 429 leaves 1, for QUIET_SECONDS
    settings.FAL_ATTEMPT_TIMEOUT_SECONDS = 20
    fake_fal.manual = True
    fake_fal.fail_submit(FAST_SDXL_I2I, status=429, times=2)  # (fal-client tries twice)
    other_model = PresetFactory(model_chain=[GHIBLIFY])
    bob = _funded_user("bob@example.com")
    first, second = _queue(bob, other_model, 2)  # older than ann's job: second goes before it
    [refused] = _queue(_funded_user("ann@example.com"), one_model, 1)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        _round()
        assert _statuses([first, refused, second]) == [S.RUNNING, S.QUEUED, S.QUEUED]

        clock.shift(dt.timedelta(seconds=15))
        fake_fal.complete_all()
        _round()  # the first finishes
        _round()  # its slot goes to the second (older, and both users have none in flight)
        assert _statuses([first, refused, second]) == [S.SUCCEEDED, S.QUEUED, S.RUNNING]

        clock.shift(dt.timedelta(seconds=schedule.QUIET_SECONDS - 15))  # a slot back; 30 s waited
        _round()
        assert _statuses([refused, second]) == [S.RUNNING, S.RUNNING]  # sent again, accepted

        clock.shift(dt.timedelta(seconds=2))
        _round()  # its first check at fal
        refused.refresh_from_db()
        [attempt] = refused.attempts.all()
        assert refused.status == S.RUNNING, refused.error_message
        assert attempt.status in (Attempt.Status.QUEUED, Attempt.Status.RUNNING)
        assert not fake_fal.job_for(attempt.fal_job_id).canceled

        fake_fal.complete_all()
        run_worker(refused)
    assert refused.status == S.SUCCEEDED
    assert len(fake_fal.submissions(FAST_SDXL_I2I)) == 2 + 1  # the refused pair, then once


def test_a_burst_of_429s_lowers_the_limit_once_and_it_recovers_step_by_step(db, settings):
    settings.FAL_MAX_CONCURRENT = 20  # steps of 2
    with time_machine.travel(timezone.now(), tick=False) as clock:
        assert schedule.fal_rate_limited() == 10
        assert schedule.fal_rate_limited() == 10  # the same burst
        clock.shift(dt.timedelta(seconds=schedule.QUIET_SECONDS - 1))
        assert schedule.effective_limit() == 10
        clock.shift(dt.timedelta(seconds=1))
        assert schedule.effective_limit() == 12
        assert schedule.fal_rate_limited() == 6  # a new 429 later halves what is in force
        clock.shift(dt.timedelta(seconds=3 * schedule.QUIET_SECONDS))
        assert schedule.effective_limit() == 12
        clock.shift(dt.timedelta(seconds=10 * schedule.QUIET_SECONDS))
        assert schedule.effective_limit() == 20  # never above FAL_MAX_CONCURRENT


def test_the_limit_never_drops_below_one(db, settings):
    settings.FAL_MAX_CONCURRENT = 3
    with time_machine.travel(timezone.now(), tick=False) as clock:
        for _ in range(4):
            schedule.fal_rate_limited()
            clock.shift(dt.timedelta(seconds=schedule.LOWER_AGAIN_AFTER_SECONDS + 0.1))
        assert schedule.effective_limit() == 1


def test_a_lowered_limit_holds_new_jobs_back(one_model, fake_fal, settings):
    settings.FAL_MAX_CONCURRENT = 4
    fake_fal.manual = True
    user = _funded_user("ann@example.com")
    generations = _queue(user, one_model, 4)
    with time_machine.travel(timezone.now(), tick=False) as clock:
        schedule.fal_rate_limited()  # 4 → 2
        clock.shift(dt.timedelta(seconds=schedule.PAUSE_SECONDS + 0.1))
        _round()
        assert _statuses(generations) == [S.RUNNING, S.RUNNING, S.QUEUED, S.QUEUED]
        clock.shift(dt.timedelta(seconds=schedule.QUIET_SECONDS))  # one step back: 3
        _round()
        assert _statuses(generations) == [S.RUNNING, S.RUNNING, S.RUNNING, S.QUEUED]


def test_a_round_with_waiting_jobs_reads_the_limit_state_once(one_model, fake_fal, settings):
    # With the database cache (no REDIS_URL) each read is a query, on every round that
    # finds a job waiting.
    settings.FAL_MAX_CONCURRENT = 4
    _queue(_funded_user("ann@example.com"), one_model, 2)
    with CaptureQueriesContext(connection) as queries:
        assert len(schedule.generations_schedule(limit=10)) == 2
    assert sum("stefna_cache" in query["sql"] for query in queries.captured_queries) == 1
