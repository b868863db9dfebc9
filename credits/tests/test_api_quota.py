"""GET /api/quota: the contract's field names, real figures from the ledger, auth and cost."""

from __future__ import annotations

import datetime as dt

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from credits import ledger
from credits.selectors import quota_for
from generation.tests.factories import GenerationFactory

QUOTA_KEYS = {
    "daily_limit",
    "daily_used",
    "remaining",
    "weekly_used",
    "dailyReset",
    "currentBalance",
    "purchased_balance",
    "timestamp",
}


def test_it_answers_the_contract_fields(api_client, user, settings):
    settings.DAILY_CREDITS = 30
    spent = GenerationFactory(user=user)
    ledger.reserve(user=user, generation=spent, amount=2)
    refunded = GenerationFactory(user=user)
    ledger.reserve(user=user, generation=refunded, amount=2)
    ledger.refund(generation=refunded)

    response = api_client.get("/api/quota")

    assert response.status_code == 200
    body = response.json()
    assert set(body) == QUOTA_KEYS
    assert (body["daily_limit"], body["daily_used"], body["weekly_used"]) == (30, 2, 2)
    assert body["remaining"] == body["currentBalance"] == 28
    reset = dt.datetime.fromisoformat(body["dailyReset"])
    assert (reset.hour, reset.minute, reset.utcoffset()) == (0, 0, dt.timedelta(0))
    assert dt.datetime.fromisoformat(body["timestamp"]) < reset


def test_a_new_user_gets_the_daily_allowance_on_first_read(api_client, settings):
    settings.DAILY_CREDITS = 12

    body = api_client.get("/api/quota").json()

    assert (body["currentBalance"], body["daily_used"], body["daily_limit"]) == (12, 0, 12)


def test_it_needs_credentials(db):
    response = Client().get("/api/quota")

    assert response.status_code == 401
    assert response.json()["code"] == "unauthorized"


def test_the_endpoint_adds_only_authentication_to_what_quota_for_costs(api_client, user, django_assert_num_queries):
    ledger.ensure_daily_allowance(user=user)
    api_client.get("/api/quota")  # warm up: the token's last_used_at stamp
    with CaptureQueriesContext(connection) as selector_queries:
        quota_for(user=user)

    # The endpoint adds exactly one query, the token lookup, to what quota_for costs;
    # and the whole answer stays within issue 10's budget of 3.
    assert 1 + len(selector_queries) <= 3
    with django_assert_num_queries(1 + len(selector_queries)):
        assert api_client.get("/api/quota").status_code == 200
