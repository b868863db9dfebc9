from __future__ import annotations

import pytest

from credits.tests.stripe_helpers import deliver, start_checkout
from tests.tasks import run_tasks


@pytest.fixture
def paid_purchase(api_client, user, fake_stripe):  # type: ignore[no-untyped-def]
    """The user bought the starter pack (50 credits, $4.99) through Stripe's checkout."""
    purchase = start_checkout(api_client)
    session = fake_stripe.pay(purchase.stripe_session_id)
    assert deliver("checkout.session.completed", session).status_code == 200
    run_tasks()  # the receipt the grant queued
    purchase.refresh_from_db()
    return purchase
