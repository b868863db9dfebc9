"""The purchase receipt is owed by the grant itself: a task queued in the grant's
transaction (django-tasks-db keeps it in this database), so a process that dies right
after the grant commits still leaves the receipt for the worker, and it goes once."""

from __future__ import annotations

import pytest
from django.core import mail
from django_tasks_db.models import DBTaskResult

from credits.payments.purchases import purchase_send_receipt
from credits.tests.stripe_helpers import deliver, start_checkout
from tests.tasks import run_tasks

pytestmark = pytest.mark.django_db

RECEIPT_TASK = "credits.payments.purchases.purchase_receipt_task"


def test_the_receipt_is_owed_in_the_grants_own_transaction_with_nothing_run_after_its_commit(api_client, fake_stripe):
    purchase = start_checkout(api_client)
    # Nothing runs the request's on-commit callbacks here (as if the process died there).
    assert deliver("checkout.session.completed", fake_stripe.pay(purchase.stripe_session_id)).status_code == 200

    owed = DBTaskResult.objects.filter(task_path=RECEIPT_TASK)
    assert [row.args_kwargs["kwargs"] for row in owed] == [{"purchase_id": str(purchase.pk)}]
    assert mail.outbox == []
    run_tasks()
    assert len(mail.outbox) == 1 and mail.outbox[0].subject.startswith("Your Stefna receipt")


def test_a_receipt_task_delivered_twice_sends_one_receipt(api_client, fake_stripe):
    purchase = start_checkout(api_client)
    deliver("checkout.session.completed", fake_stripe.pay(purchase.stripe_session_id))

    purchase_send_receipt(purchase_id=str(purchase.pk))
    purchase_send_receipt(purchase_id=str(purchase.pk))

    assert len(mail.outbox) == 1
    purchase.refresh_from_db()
    assert purchase.receipt_sent_at is not None
