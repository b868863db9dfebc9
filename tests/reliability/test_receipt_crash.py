"""The purchase receipt when the process that granted the purchase dies right after the
grant committed (SIGKILL, no clean-up code runs): the receipt is still owed.

The reconciliation asks Stripe how a pending checkout ended and grants it. The fake
Stripe kills the reconciling process at the first request it makes after asking for the
session (before, the receipt's own request for the payment intent, sent once the grant
had committed); whether or not it is killed, the worker that runs next must still owe the
buyer their receipt, and send it once.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from credits.models import Purchase
from credits.tests.stripe_helpers import purchased, start_checkout
from tests.fakes.stripe import SECRET_KEY, WEBHOOK_SECRET
from tests.tasks import run_tasks

from .conftest import ROOT, child_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

RECONCILE = (
    "import django; django.setup(); from credits.payments.purchases import purchase_reconcile_pending; "
    "purchase_reconcile_pending()"
)


def test_a_reconciliation_killed_right_after_its_grant_still_leaves_the_receipt_owed(
    api_client, user, fake_stripe, fake_smtp, seeded_packs
):
    purchase = start_checkout(api_client)
    fake_stripe.pay(purchase.stripe_session_id)  # paid at Stripe; the webhook never came
    Purchase.objects.filter(pk=purchase.pk).update(created_at=timezone.now() - dt.timedelta(hours=1))

    reconciler: subprocess.Popen[bytes]

    def kill_after_the_session_is_read(method: str, path: str) -> None:
        if "/checkout/sessions/" not in path:
            os.kill(reconciler.pid, signal.SIGKILL)

    fake_stripe.on_request = kill_after_the_session_is_read
    env = child_env() | {
        "STRIPE_SECRET_KEY": SECRET_KEY,
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_API_BASE": fake_stripe.url,
        "EMAIL_HOST": fake_smtp.host,
        "EMAIL_PORT": str(fake_smtp.port),
        "EMAIL_USE_TLS": "0",
    }
    reconciler = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", RECONCILE], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output, _ = reconciler.communicate(timeout=60)
    fake_stripe.on_request = None

    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PAID, output.decode()
    assert purchased(user) == 50
    owed = DBTaskResult.objects.filter(task_path="credits.payments.purchases.purchase_receipt_task")
    assert [row.args_kwargs["kwargs"] for row in owed] == [{"purchase_id": str(purchase.pk)}], output.decode()
    run_tasks()
    run_tasks()
    (receipt,) = fake_smtp.messages
    assert receipt.recipients == [user.email]
