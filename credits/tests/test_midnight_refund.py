"""A generation reserved just before UTC midnight and refunded just after it.

Its free credits came out of a day whose allowance is over: the fair outcome is the one
the user would have had had it failed a second earlier (today's allowance, no more), and
it must not depend on whether something read the quota in between. Its bought credits
never expire and always come back. Through the real endpoints: start and cancel over
the API, the quota and the account page as the user sees them."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from django.db import connection

from credits import ledger
from credits.models import CreditEntry
from credits.tests.stripe_helpers import assert_clean
from generation.tests.api_support import photo
from presets.tests.factories import PresetFactory

UTC = dt.UTC
RESERVED_AT = dt.datetime(2026, 3, 1, 23, 59, 59, tzinfo=UTC)
HEADER_READ_AT = dt.datetime(2026, 3, 2, 0, 0, 0, 500_000, tzinfo=UTC)
REFUNDED_AT = dt.datetime(2026, 3, 2, 0, 0, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _allowance(settings):
    settings.DAILY_CREDITS = 30
    settings.RATE_LIMIT_GENERATIONS = (1000, 60)


def start(api_client) -> str:
    PresetFactory(slug="oil")
    response = api_client.post("/api/generations", {"image": photo(), "preset": "oil"})
    assert response.status_code == 202, response.content
    return response.json()["id"]


def cancel(api_client, generation_id: str) -> None:
    assert api_client.post(f"/api/generations/{generation_id}/cancel").status_code == 200


@pytest.mark.parametrize("read_after_midnight", [False, True], ids=["refund-first", "header-read-first"])
def test_a_refund_just_after_midnight_ends_with_todays_allowance_whatever_read_it_first(
    api_client, user, read_after_midnight
):
    with time_machine.travel(RESERVED_AT, tick=False):
        generation_id = start(api_client)
        assert api_client.get("/api/quota").json()["remaining"] == 28
    if read_after_midnight:
        with time_machine.travel(HEADER_READ_AT, tick=False):
            assert api_client.get("/api/quota").json()["remaining"] == 30

    with time_machine.travel(REFUNDED_AT, tick=False):
        cancel(api_client, generation_id)
        quota = api_client.get("/api/quota").json()

    # As if it had failed at 23:59:59: yesterday's 28 + 2 topped up to today's 30.
    assert (quota["currentBalance"], quota["remaining"], quota["purchased_balance"]) == (30, 30, 0)
    assert (quota["daily_used"], quota["weekly_used"]) == (0, 0)
    assert_clean(user)


def test_free_credits_cannot_be_banked_across_midnight_by_cancelling_late(api_client, user):
    with time_machine.travel(RESERVED_AT, tick=False):
        held = [start(api_client) for _ in range(15)]  # the whole day's 30 free credits
        assert api_client.get("/api/quota").json()["currentBalance"] == 0
    with time_machine.travel(HEADER_READ_AT, tick=False):
        api_client.get("/api/quota")
    with time_machine.travel(REFUNDED_AT, tick=False):
        for generation_id in held:
            cancel(api_client, generation_id)
        assert api_client.get("/api/quota").json()["currentBalance"] == 30, "not 60"
    with time_machine.travel(REFUNDED_AT + dt.timedelta(days=1), tick=False):
        assert api_client.get("/api/quota").json()["currentBalance"] == 30
    assert_clean(user)


def test_bought_credits_of_a_late_refund_come_back_and_the_history_says_what_expired(api_client, client, user):
    with time_machine.travel(RESERVED_AT, tick=False):
        ledger.grant(user=user, amount=10, note="bought")
        ledger.grant(user=user, amount=-29, reason=CreditEntry.Reason.ADJUST, note="spent")  # 1 free left
        generation_id = start(api_client)  # 1 free + 1 bought
        assert (api_client.get("/api/quota").json()["purchased_balance"]) == 9

    with time_machine.travel(REFUNDED_AT, tick=False):
        cancel(api_client, generation_id)
        quota = api_client.get("/api/quota").json()
        client.force_login(user)
        page = client.get("/accounts/").content.decode()

    assert (quota["remaining"], quota["purchased_balance"], quota["currentBalance"]) == (30, 10, 40)
    expired = CreditEntry.objects.get(user=user, reason=CreditEntry.Reason.ALLOWANCE_EXPIRED)
    assert (expired.amount, expired.purchased_amount, expired.balance_after) == (-1, 0, 40)
    assert "Free credits of an earlier day expired" in page
    assert_clean(user)


def test_a_refund_on_the_day_it_was_reserved_gives_every_credit_back(api_client, user):
    with time_machine.travel(RESERVED_AT - dt.timedelta(hours=1), tick=False):
        generation_id = start(api_client)
    with time_machine.travel(RESERVED_AT, tick=False):
        cancel(api_client, generation_id)
        assert api_client.get("/api/quota").json()["remaining"] == 30
    assert not CreditEntry.objects.filter(reason=CreditEntry.Reason.ALLOWANCE_EXPIRED).exists()
    assert_clean(user)


def test_a_reservation_stamped_after_midnight_draws_from_the_day_it_was_counted_in(api_client, user):
    """The reservation reads the clock to pick the day whose allowance it draws from, and
    its entry is stamped a moment later: here midnight falls in between. The refund the
    next morning must still treat those free credits as the earlier day's (they expire),
    not give them back on top of the new day's allowance."""
    with time_machine.travel(RESERVED_AT, tick=False) as clock:
        assert api_client.get("/api/quota").json()["remaining"] == 30  # the day's allowance applied

        def midnight_strikes_at_the_balance_write(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
            if sql.startswith('UPDATE "credits_wallet" SET "balance"'):
                clock.move_to(HEADER_READ_AT)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(midnight_strikes_at_the_balance_write):
            generation_id = start(api_client)
    reserved = CreditEntry.objects.get(user=user, reason=CreditEntry.Reason.RESERVE)
    assert reserved.created_at == HEADER_READ_AT, "the entry was stamped after midnight"

    with time_machine.travel(REFUNDED_AT, tick=False):
        cancel(api_client, generation_id)
        quota = api_client.get("/api/quota").json()

    assert (quota["currentBalance"], quota["remaining"]) == (30, 30), "not 32: yesterday's 2 on top of today's 30"
    assert_clean(user)
