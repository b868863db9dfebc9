"""Helpers for tests that buy credits at the wire: the real endpoints, the real Stripe SDK
against the fake Stripe (tests/fakes/stripe.py), webhooks signed with Stripe's scheme."""

from __future__ import annotations

from django.test import Client

from credits.models import Purchase
from credits.reconcile import find_ledger_problems
from credits.selectors import quota_for
from tests.fakes.stripe import WEBHOOK_SECRET, FakeStripe, sign


def deliver(event_type, obj, *, event_id=None, secret=WEBHOOK_SECRET, timestamp=None, body=None):  # type: ignore[no-untyped-def]
    payload = body if body is not None else FakeStripe.event(event_type, obj, event_id=event_id)
    return Client().post(
        "/api/stripe/webhook",
        data=payload,
        content_type="application/json",
        HTTP_STRIPE_SIGNATURE=sign(payload, secret, timestamp),
    )


def start_checkout(api_client, pack="starter"):  # type: ignore[no-untyped-def]
    response = api_client.post("/api/checkout", {"pack": pack}, content_type="application/json")
    assert response.status_code == 201, response.content
    return Purchase.objects.get(pk=response.json()["purchase_id"])


def purchased(user) -> int:  # type: ignore[no-untyped-def]
    return quota_for(user=user).purchased_balance


def assert_clean(user):  # type: ignore[no-untyped-def]
    assert find_ledger_problems(users=[user]) == []
