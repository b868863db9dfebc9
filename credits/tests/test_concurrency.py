"""Twenty simultaneous starts for a user who can afford five.

Runs on both databases: on PostgreSQL the wallet row lock makes the threads queue;
SQLite serialises writing transactions (BEGIN IMMEDIATE). Either way exactly five
succeed and nobody spends a credit twice.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections

from credits import ledger
from credits.exceptions import InsufficientCredits
from credits.models import CreditEntry
from credits.reconcile import find_ledger_problems
from credits.selectors import balance_of
from generation.models import Generation
from stefna.accounts.models import User

from .helpers import finish, own_preset, photo, start_generation

THREADS = 20


def _race(worker, count=THREADS):  # type: ignore[no-untyped-def]
    """Run `worker()` in `count` threads released together; return each outcome."""
    barrier = threading.Barrier(count)

    def run():  # type: ignore[no-untyped-def]
        try:
            barrier.wait(timeout=30)
            return worker()
        except Exception as error:  # the outcome under test, not a failure of the harness
            return error
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(lambda _: run(), range(count)))


@pytest.fixture
def many_starts_allowed(settings):
    settings.RATE_LIMIT_GENERATIONS = (1000, 60)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("funded_by", ["grant", "daily_allowance"])
def test_twenty_parallel_starts_with_credits_for_five_let_exactly_five_through(
    settings, many_starts_allowed, funded_by
):
    user = User.objects.create_user(email="racer@example.com")
    if funded_by == "grant":
        settings.DAILY_CREDITS = 0
        ledger.grant(user=user, amount=5 * settings.GENERATION_COST)
    else:
        # No wallet yet: the threads also race to create it and to apply today's allowance.
        settings.DAILY_CREDITS = 5 * settings.GENERATION_COST
    photo()  # decode the image and make the preset before the race, not in it
    own_preset()

    outcomes = _race(lambda: start_generation(User.objects.get(pk=user.pk)))

    started = [outcome for outcome in outcomes if isinstance(outcome, Generation)]
    refused = [outcome for outcome in outcomes if isinstance(outcome, InsufficientCredits)]
    unexpected = [outcome for outcome in outcomes if outcome not in started and outcome not in refused]
    assert unexpected == []
    assert (len(started), len(refused)) == (5, 15)
    assert all(error.status == 402 for error in refused)
    assert balance_of(user=user) == 0
    assert Generation.objects.filter(user=user).count() == 5
    assert CreditEntry.objects.filter(user=user, reason=CreditEntry.Reason.RESERVE).count() == 5
    assert CreditEntry.objects.filter(user=user, reason=CreditEntry.Reason.DAILY_ALLOWANCE).count() == (
        1 if funded_by == "daily_allowance" else 0
    )
    assert min(CreditEntry.objects.filter(user=user).values_list("balance_after", flat=True)) >= 0
    assert find_ledger_problems() == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("settle", ["refund", "capture"])
def test_a_settlement_delivered_by_two_threads_at_once_happens_once(settings, settle):
    settings.DAILY_CREDITS = 0
    user = User.objects.create_user(email="twice@example.com")
    ledger.grant(user=user, amount=2)
    status = Generation.Status.FAILED if settle == "refund" else Generation.Status.SUCCEEDED
    generation = finish(start_generation(user), status)

    # Webhook and poller deliver the same outcome at the same moment.
    outcomes = _race(lambda: getattr(ledger, settle)(generation=Generation.objects.get(pk=generation.pk)), count=2)

    written = [outcome for outcome in outcomes if isinstance(outcome, CreditEntry)]
    assert len(written) == 1, outcomes
    assert outcomes.count(None) == 1
    assert CreditEntry.objects.filter(generation=generation, reason=settle).count() == 1
    assert balance_of(user=user) == (2 if settle == "refund" else 0)
    assert find_ledger_problems() == []


@pytest.mark.django_db(transaction=True)
def test_parallel_grants_and_spends_keep_every_running_balance_exact(settings, many_starts_allowed):
    settings.DAILY_CREDITS = 0
    user = User.objects.create_user(email="busy@example.com")
    ledger.grant(user=user, amount=20)
    photo()
    own_preset()
    counter = iter(range(THREADS))
    lock = threading.Lock()

    def work():  # type: ignore[no-untyped-def]
        with lock:
            turn = next(counter)
        fresh = User.objects.get(pk=user.pk)
        return ledger.grant(user=fresh, amount=1) if turn % 2 else start_generation(fresh)

    outcomes = _race(work)

    assert [outcome for outcome in outcomes if isinstance(outcome, Exception)] == []
    # 20 + 10 grants of 1 - 10 starts of 2 = 10
    assert balance_of(user=user) == 10
    assert find_ledger_problems() == []
