"""The quota and the daily allowance, on a frozen clock across UTC midnight."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db import IntegrityError, transaction

from credits import ledger
from credits.models import CreditEntry
from credits.reconcile import find_ledger_problems
from credits.selectors import balance_of, quota_for
from generation.models import Generation

from .helpers import finish, start_generation

pytestmark = pytest.mark.django_db

UTC = dt.UTC
LATE_EVENING = dt.datetime(2026, 3, 1, 23, 50, tzinfo=UTC)
JUST_AFTER_MIDNIGHT = dt.datetime(2026, 3, 2, 0, 5, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _allowance(settings):
    settings.DAILY_CREDITS = 30
    settings.RATE_LIMIT_GENERATIONS = (1000, 60)


def allowance_entries(user):  # type: ignore[no-untyped-def]
    return list(
        CreditEntry.objects.filter(user=user, reason=CreditEntry.Reason.DAILY_ALLOWANCE)
        .order_by("id")
        .values_list("allowance_day", "amount")
    )


def test_the_first_quota_read_of_the_day_applies_the_allowance_once(user):
    with time_machine.travel(LATE_EVENING, tick=False):
        quota = quota_for(user=user)
        quota_for(user=user)
    assert (quota.daily_limit, quota.remaining, quota.current_balance) == (30, 30, 30)
    assert (quota.daily_used, quota.weekly_used) == (0, 0)
    assert quota.daily_reset == dt.datetime(2026, 3, 2, tzinfo=UTC)
    assert quota.timestamp == LATE_EVENING
    assert allowance_entries(user) == [(dt.date(2026, 3, 1), 30)]


def test_midnight_tops_up_to_the_allowance_and_resets_daily_used(user):
    with time_machine.travel(LATE_EVENING, tick=False):
        start_generation(user)
        start_generation(user)
        evening = quota_for(user=user)
    assert (evening.current_balance, evening.daily_used, evening.weekly_used) == (26, 4, 4)
    assert evening.daily_reset == dt.datetime(2026, 3, 2, tzinfo=UTC)

    with time_machine.travel(JUST_AFTER_MIDNIGHT, tick=False):
        morning = quota_for(user=user)
        again = quota_for(user=user)
    assert (morning.current_balance, morning.remaining) == (30, 30)
    assert morning.daily_used == 0, "yesterday's spending does not count today"
    assert morning.weekly_used == 4, "but it does count this week"
    assert morning.daily_reset == dt.datetime(2026, 3, 3, tzinfo=UTC)
    assert again == morning
    assert allowance_entries(user) == [(dt.date(2026, 3, 1), 30), (dt.date(2026, 3, 2), 4)]
    assert find_ledger_problems() == []


def test_the_first_spend_after_midnight_applies_the_allowance_too(user):
    with time_machine.travel(LATE_EVENING, tick=False):
        for _ in range(15):
            start_generation(user)
        assert balance_of(user=user) == 0
    with time_machine.travel(JUST_AFTER_MIDNIGHT, tick=False):
        # No quota read first: starting a generation is the first thing the user does today.
        start_generation(user)
        assert balance_of(user=user) == 28
        assert quota_for(user=user).daily_used == 2
    assert allowance_entries(user) == [(dt.date(2026, 3, 1), 30), (dt.date(2026, 3, 2), 30)]


def test_granted_credits_above_the_allowance_are_kept_at_midnight(user):
    with time_machine.travel(LATE_EVENING, tick=False):
        ledger.grant(user=user, amount=50, note="launch promo")
        assert quota_for(user=user).current_balance == 80, "the grant lands on top of today's allowance"
    with time_machine.travel(JUST_AFTER_MIDNIGHT, tick=False):
        assert quota_for(user=user).current_balance == 80
    assert allowance_entries(user) == [(dt.date(2026, 3, 1), 30)], "no top-up when already above the allowance"


def test_a_balance_partly_above_zero_is_topped_up_only_by_the_difference(user):
    with time_machine.travel(LATE_EVENING, tick=False):
        quota_for(user=user)
        ledger.grant(user=user, amount=-25, reason=CreditEntry.Reason.ADJUST)
    with time_machine.travel(JUST_AFTER_MIDNIGHT, tick=False):
        assert quota_for(user=user).current_balance == 30
    assert allowance_entries(user) == [(dt.date(2026, 3, 1), 30), (dt.date(2026, 3, 2), 25)]


def test_refunds_are_netted_against_the_day_they_were_reserved(user):
    with time_machine.travel(LATE_EVENING, tick=False):
        generations = [start_generation(user) for _ in range(3)]
        ledger.refund(generation=finish(generations[0], Generation.Status.FAILED))
        quota = quota_for(user=user)
    assert (quota.daily_used, quota.weekly_used, quota.current_balance) == (4, 4, 26)

    with time_machine.travel(JUST_AFTER_MIDNIGHT, tick=False):
        start_generation(user)
        # Yesterday's job fails after midnight: the refund lowers yesterday's (and the
        # week's) spending, not today's.
        ledger.refund(generation=finish(generations[1], Generation.Status.FAILED))
        quota = quota_for(user=user)
    assert (quota.daily_used, quota.weekly_used) == (2, 4)
    assert find_ledger_problems() == []


def test_weekly_used_covers_the_last_seven_utc_days(user):
    with time_machine.travel(LATE_EVENING, tick=False):
        start_generation(user)
    with time_machine.travel(LATE_EVENING + dt.timedelta(days=6), tick=False):
        assert quota_for(user=user).weekly_used == 2
    with time_machine.travel(JUST_AFTER_MIDNIGHT + dt.timedelta(days=6), tick=False):
        quota = quota_for(user=user)
    assert (quota.daily_used, quota.weekly_used) == (0, 0)


def test_the_database_allows_one_allowance_entry_per_user_per_day(user):
    with time_machine.travel(LATE_EVENING, tick=False):
        quota_for(user=user)
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditEntry.objects.create(
            user=user,
            amount=5,
            reason=CreditEntry.Reason.DAILY_ALLOWANCE,
            allowance_day=dt.date(2026, 3, 1),
            balance_after=35,
        )


def test_next_reset_is_the_next_utc_midnight_whatever_the_offset_of_now():
    tokyo = dt.timezone(dt.timedelta(hours=9))
    # 08:30 in Tokyo on 2 March is 23:30 UTC on 1 March.
    assert ledger.next_reset(dt.datetime(2026, 3, 2, 8, 30, tzinfo=tokyo)) == dt.datetime(2026, 3, 2, tzinfo=UTC)
    assert ledger.next_reset(dt.datetime(2026, 3, 2, 0, 0, tzinfo=UTC)) == dt.datetime(2026, 3, 3, tzinfo=UTC)


def test_reading_the_quota_costs_a_fixed_few_queries(user, django_assert_max_num_queries):
    quota_for(user=user)  # first read of the day writes the allowance
    for _ in range(3):
        start_generation(user)
    # The header shows the quota on every page: one wallet read, one spending aggregate.
    with django_assert_max_num_queries(2):
        quota = quota_for(user=user)
    assert quota.daily_used == 6
