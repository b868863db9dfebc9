"""The dashboard figures on a known data set: exact numbers, one query per figure."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from credits import ledger
from generation import dashboard
from generation.models import Attempt, Generation
from generation.registry import FAST_SDXL_I2I, GHIBLIFY, REALISTIC_VISION
from generation.tests.factories import AttemptFactory, GenerationFactory, MediaFactory
from presets.tests.factories import PresetFactory
from stefna.accounts.tests.factories import UserFactory

NOW = dt.datetime(2026, 11, 20, 12, 30, tzinfo=dt.UTC)
TODAY = NOW.date()
YESTERDAY = TODAY - dt.timedelta(days=1)
S = Generation.Status
A = Attempt.Status


def at(day: dt.date, hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=dt.UTC)


def make_generation(user, preset, created: dt.datetime, status: str, attempts=()):
    """A generation created at `created`, with attempts given as (model, status, seconds or None)."""
    with time_machine.travel(created, tick=False):
        generation = GenerationFactory(user=user, preset=preset, status=status, completed_at=None)
    for position, (model, attempt_status, seconds) in enumerate(attempts):
        started = created + dt.timedelta(seconds=1 + position * 100)
        with time_machine.travel(started, tick=False):
            AttemptFactory(
                generation=generation,
                position=position,
                model=model,
                status=attempt_status,
                finished_at=started + dt.timedelta(seconds=seconds) if seconds is not None else None,
            )
    return generation


@pytest.fixture
def data_set(db):
    """Nine generations over three weeks; see each line for what it contributes."""
    user = UserFactory(email="dash@example.com")
    preset = PresetFactory(model_chain=[GHIBLIFY, REALISTIC_VISION, FAST_SDXL_I2I])
    g = {}
    # Today.
    g[1] = make_generation(user, preset, at(TODAY, 12, 10), S.SUCCEEDED, [(GHIBLIFY, A.SUCCEEDED, 10)])
    g[2] = make_generation(
        user, preset, at(TODAY, 11, 5), S.SUCCEEDED, [(GHIBLIFY, A.FAILED, 5), (REALISTIC_VISION, A.SUCCEEDED, 20)]
    )
    g[3] = make_generation(
        user, preset, at(TODAY, 11, 40), S.FAILED, [(GHIBLIFY, A.FAILED, 3), (REALISTIC_VISION, A.FAILED, 4)]
    )
    g[8] = make_generation(user, preset, at(TODAY, 12, 20), S.RUNNING, [(GHIBLIFY, A.RUNNING, None)])
    # Yesterday, all before the 24-hour window (which starts at 13:00 yesterday).
    g[4] = make_generation(user, preset, at(YESTERDAY, 9), S.SUCCEEDED, [(GHIBLIFY, A.SUCCEEDED, 30)])
    g[5] = make_generation(user, preset, at(YESTERDAY, 10), S.CANCELED, [(GHIBLIFY, A.CANCELED, 2)])
    g[9] = make_generation(user, preset, at(YESTERDAY, 12), S.SUCCEEDED, [(GHIBLIFY, A.SUCCEEDED, 50)])
    # Three days ago, inside the 14-day window.
    g[6] = make_generation(
        user, preset, at(TODAY - dt.timedelta(days=3), 8), S.SUCCEEDED, [(GHIBLIFY, A.SUCCEEDED, 40)]
    )
    # Twenty days ago: outside every window.
    g[7] = make_generation(
        user, preset, at(TODAY - dt.timedelta(days=20), 8), S.SUCCEEDED, [(GHIBLIFY, A.SUCCEEDED, 1000)]
    )

    with time_machine.travel(at(TODAY, 12, 11), tick=False):
        MediaFactory(generation=g[1], persisted=True)
    with time_machine.travel(at(TODAY, 11, 6), tick=False):
        MediaFactory(generation=g[2], persisted=False)
    with time_machine.travel(at(YESTERDAY, 9, 1), tick=False):
        MediaFactory(generation=g[4], persisted=False)

    # Money goes through the ledger, as in production.
    for number in (4, 5, 9):
        with time_machine.travel(g[number].created_at, tick=False):
            ledger.reserve(user=user, generation=g[number], amount=2)
    for number in (1, 2, 3):
        with time_machine.travel(g[number].created_at, tick=False):
            ledger.reserve(user=user, generation=g[number], amount=2)
    with time_machine.travel(at(TODAY, 11, 50), tick=False):
        ledger.refund(generation=g[3])
        # Yesterday's cancellation refunded late, today: it counts today.
        ledger.refund(generation=g[5])
    return g


def test_generations_per_hour_counts_the_last_24_hours(data_set, django_assert_num_queries):
    with django_assert_num_queries(1):
        hours = dashboard.generations_per_hour(now=NOW)
    assert len(hours) == 24
    assert hours[0].start == at(YESTERDAY, 13)
    assert hours[-1].start == at(TODAY, 12)
    by_hour = {bucket.start: bucket for bucket in hours if bucket.total}
    assert set(by_hour) == {at(TODAY, 11), at(TODAY, 12)}
    eleven, noon = by_hour[at(TODAY, 11)], by_hour[at(TODAY, 12)]
    assert (eleven.total, eleven.succeeded, eleven.failed, eleven.canceled) == (2, 1, 1, 0)
    # The running generation counts in the total only.
    assert (noon.total, noon.succeeded, noon.failed, noon.canceled) == (2, 1, 0, 0)


def test_generations_per_day_counts_14_utc_days(data_set, django_assert_num_queries):
    with django_assert_num_queries(1):
        days = dashboard.generations_per_day(now=NOW)
    assert [day.start for day in days] == [TODAY - dt.timedelta(days=n) for n in range(13, -1, -1)]
    totals = {day.start: (day.total, day.succeeded, day.failed, day.canceled) for day in days if day.total}
    assert totals == {
        TODAY: (4, 2, 1, 0),
        YESTERDAY: (3, 2, 0, 1),
        TODAY - dt.timedelta(days=3): (1, 1, 0, 0),
    }


def test_model_stats_give_success_rate_and_latency_percentiles(data_set, django_assert_num_queries):
    since = at(TODAY - dt.timedelta(days=13), 0)
    with django_assert_num_queries(2):
        stats = {row.model: row for row in dashboard.model_stats(since=since)}
    assert set(stats) == {GHIBLIFY, REALISTIC_VISION}
    ghiblify = stats[GHIBLIFY]
    # Finished attempts in the window: 4 succeeded (10, 30, 40, 50 s), 2 failed, 1 canceled;
    # the running one and the 20-day-old one are left out.
    assert (ghiblify.attempts, ghiblify.succeeded, ghiblify.failed, ghiblify.canceled) == (7, 4, 2, 1)
    assert ghiblify.success_rate == pytest.approx(4 / 6)
    assert ghiblify.median_seconds == pytest.approx(35.0)
    # percentile_cont: rank 0.95 * 3 = 2.85, so 40 + 0.85 * (50 - 40).
    assert ghiblify.p95_seconds == pytest.approx(48.5)
    realistic = stats[REALISTIC_VISION]
    assert (realistic.attempts, realistic.succeeded, realistic.failed) == (2, 1, 1)
    assert realistic.success_rate == 0.5
    assert realistic.median_seconds == pytest.approx(20.0)
    assert realistic.p95_seconds == pytest.approx(20.0)


def test_fallback_rate_counts_generations_won_by_a_later_model(data_set, django_assert_num_queries):
    with django_assert_num_queries(1):
        fallback = dashboard.fallback_rate(since=at(TODAY - dt.timedelta(days=13), 0))
    # Succeeded in the window: 1, 2, 4, 6, 9; only 2 needed the second model.
    assert (fallback.succeeded, fallback.fell_back) == (5, 1)
    assert fallback.rate == pytest.approx(0.2)


def test_persistence_backlog_counts_unpersisted_media_and_the_oldest(data_set, django_assert_num_queries):
    with django_assert_num_queries(1):
        backlog = dashboard.persistence_backlog()
    assert backlog.count == 2
    assert backlog.oldest_created_at == at(YESTERDAY, 9, 1)


def test_credits_per_day_nets_refunds_on_the_day_they_happen(data_set, django_assert_num_queries):
    with django_assert_num_queries(1):
        days = dashboard.credits_per_day(now=NOW)
    assert len(days) == 14
    figures = {day.day: (day.reserved, day.refunded, day.spent) for day in days if day.reserved or day.refunded}
    # Allowance entries are not spending and are left out.
    assert figures == {YESTERDAY: (6, 0, 6), TODAY: (6, 4, 2)}


def test_dashboard_costs_eleven_queries(data_set, django_assert_num_queries):
    with django_assert_num_queries(11):
        board = dashboard.dashboard(now=NOW)
    assert board.fallback.fell_back == 1
    assert sum(day.total for day in board.per_day) == 8


def test_dashboard_on_an_empty_database_has_no_rates(db):
    board = dashboard.dashboard(now=NOW)
    assert board.models == []
    assert board.fallback.rate is None
    assert board.backlog.count == 0 and board.backlog.oldest_created_at is None
    assert all(day.spent == 0 for day in board.credits_per_day)


@pytest.mark.parametrize(
    ("values", "fraction", "expected"),
    [([], 0.5, None), ([7.0], 0.95, 7.0), ([1.0, 2.0], 0.5, 1.5), ([10.0, 20.0, 30.0, 40.0], 0.95, 38.5)],
)
def test_percentile_interpolates_like_percentile_cont(values, fraction, expected):
    result = dashboard.percentile(values, fraction)
    assert result == (pytest.approx(expected) if expected is not None else None)
