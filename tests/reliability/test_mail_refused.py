"""A mail server that refuses an email we owe (the owner's "it's done", the buyer's
receipt) does not lose it: the task tries again later, with a backoff, and the email goes
once. At the wire: Django's SMTP backend against the fake SMTP server (tests/fakes/smtp.py)."""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from credits.models import CreditEntry, Purchase
from credits.tests.stripe_helpers import deliver, purchased, start_checkout
from generation.models import Generation
from generation.tests.pipeline_helpers import failed_with_its_email_owed
from stefna.mail import RETRY_DELAYS
from tests.tasks import run_tasks, time_passes

pytestmark = pytest.mark.django_db


def paid_purchase(api_client, fake_stripe) -> Purchase:
    purchase = start_checkout(api_client)
    assert deliver("checkout.session.completed", fake_stripe.pay(purchase.stripe_session_id)).status_code == 200
    return purchase


def the_retry() -> DBTaskResult:
    (waiting,) = DBTaskResult.objects.filter(status="READY")
    return waiting


def test_an_owner_email_the_mail_server_refuses_goes_on_a_later_try_exactly_once(
    fake_fal, fake_smtp, user, django_capture_on_commit_callbacks
):
    generation = failed_with_its_email_owed(fake_fal, user, django_capture_on_commit_callbacks)
    fake_smtp.refuse_next(1)  # 451 to DATA: busy, try later

    run_tasks()
    assert (fake_smtp.refused, fake_smtp.messages) == (1, [])
    assert the_retry().run_after > timezone.now() + dt.timedelta(seconds=50), "a backoff, not at once"
    assert run_tasks() == 0, "not before its time"

    time_passes()
    run_tasks()
    (sent,) = fake_smtp.messages
    assert sent.recipients == [user.email] and "couldn't make" in sent.message["Subject"]
    for _ in range(len(RETRY_DELAYS) + 1):
        time_passes()
        run_tasks()
    assert len(fake_smtp.messages) == 1, "once"

    generation.refresh_from_db()
    assert generation.status == Generation.Status.FAILED and generation.notified_at is not None
    assert CreditEntry.objects.filter(generation=generation, reason=CreditEntry.Reason.REFUND).count() == 1


def test_a_receipt_the_mail_server_refuses_goes_on_a_later_try_exactly_once(api_client, user, fake_stripe, fake_smtp):
    purchase = paid_purchase(api_client, fake_stripe)
    fake_smtp.refuse_next(1)

    run_tasks()
    assert (fake_smtp.refused, fake_smtp.messages) == (1, [])
    assert run_tasks() == 0, "not before its time"

    time_passes()
    run_tasks()
    (sent,) = fake_smtp.messages
    assert sent.recipients == [user.email] and "receipt" in sent.message["Subject"]
    for _ in range(len(RETRY_DELAYS) + 1):
        time_passes()
        run_tasks()
    assert len(fake_smtp.messages) == 1, "once"

    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PAID and purchase.receipt_sent_at is not None
    assert purchased(user) == 50


def test_an_email_refused_at_every_try_is_given_up_after_about_a_day_with_an_error_line(
    api_client, fake_stripe, fake_smtp, caplog
):
    purchase = paid_purchase(api_client, fake_stripe)
    fake_smtp.refuse_next(1000)

    with caplog.at_level(logging.WARNING, logger="credits.payments"):
        run_tasks()
        for _ in range(len(RETRY_DELAYS) + 3):
            time_passes()
            run_tasks()

    assert fake_smtp.refused == len(RETRY_DELAYS) + 1 and fake_smtp.messages == []
    assert sum(RETRY_DELAYS) <= 2 * 24 * 3600
    (given_up,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert f"purchase {purchase.pk}: the receipt email failed {len(RETRY_DELAYS) + 1} times" in given_up.getMessage()
    assert not DBTaskResult.objects.filter(status="READY").exists()


def test_a_recipient_the_mail_server_refuses_for_good_is_not_tried_again(
    fake_fal, fake_smtp, user, django_capture_on_commit_callbacks, caplog
):
    generation = failed_with_its_email_owed(fake_fal, user, django_capture_on_commit_callbacks)
    fake_smtp.refuse_recipients(code=550)

    with caplog.at_level(logging.ERROR, logger="generation"):
        run_tasks()
        time_passes()
        assert run_tasks() <= 1  # the queued try finds the email settled and sends nothing
    fake_smtp.refuse_recipients(code=0)
    time_passes()
    run_tasks()

    assert fake_smtp.messages == []
    assert any("refused for good" in r.getMessage() for r in caplog.records)
    generation.refresh_from_db()
    assert generation.status == Generation.Status.FAILED
