from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from credits import ledger
from credits.models import CreditEntry, Wallet
from credits.reconcile import find_ledger_problems
from credits.selectors import balance_of
from generation.models import Generation

from .helpers import finish, start_generation

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_allowance(settings):
    settings.DAILY_CREDITS = 0


def run(*args):  # type: ignore[no-untyped-def]
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command(*args, stdout=out, stderr=err)
        code = 0
    except SystemExit as exit:
        code = exit.code
    return code, out.getvalue(), err.getvalue()


def test_grant_credits_adds_through_the_ledger_and_prints_the_new_balance(user):
    ledger.grant(user=user, amount=3)
    code, out, _ = run("grant_credits", "ADA@example.com", "12")
    assert code == 0
    assert "New balance: 15" in out
    entry = CreditEntry.objects.latest("id")
    assert (entry.reason, entry.amount, entry.balance_after) == (CreditEntry.Reason.GRANT, 12, 15)
    assert balance_of(user=user) == 15


@pytest.mark.parametrize("amount", ["0", "-5", "abc", "2.5", "1000001", ""])
def test_grant_credits_refuses_a_bad_amount_and_changes_nothing(user, amount):
    with pytest.raises(CommandError, match="AMOUNT"):
        call_command("grant_credits", user.email, amount)
    assert not CreditEntry.objects.exists()


def test_grant_credits_says_when_it_applied_today_s_allowance_first(user, settings):
    settings.DAILY_CREDITS = 30
    code, out, _ = run("grant_credits", user.email, "5")
    assert code == 0
    assert out.splitlines() == [
        "Applied today's daily allowance first: +30.",
        "Granted 5 credits to ada@example.com. New balance: 35",
    ]


def test_grant_credits_refuses_an_unknown_email():
    with pytest.raises(CommandError, match="No user with the email 'nobody@example.com'"):
        call_command("grant_credits", "nobody@example.com", "5")


def test_check_ledger_passes_a_clean_ledger(user):
    ledger.grant(user=user, amount=10)
    ledger.capture(generation=finish(start_generation(user), Generation.Status.SUCCEEDED))
    ledger.refund(generation=finish(start_generation(user), Generation.Status.FAILED))
    start_generation(user)  # still queued: its charge is open, as it should be
    code, out, err = run("check_ledger")
    assert code == 0, err
    assert "Ledger is clean" in out


def test_check_ledger_reports_a_wallet_that_disagrees_with_its_entries(user):
    ledger.grant(user=user, amount=10)
    Wallet.objects.filter(pk=user.pk).update(balance=99)
    code, _, err = run("check_ledger")
    assert code == 1
    assert f"user {user.pk}: wallet balance 99 but entries sum to 10" in err


def test_check_ledger_reports_a_wrong_running_balance(user):
    ledger.grant(user=user, amount=10)
    entry = ledger.grant(user=user, amount=5)
    CreditEntry.objects.filter(pk=entry.pk).update(balance_after=16)
    assert find_ledger_problems() == [
        f"user {user.pk}: entry {entry.pk} says balance_after 16, running total is 15",
    ]


@pytest.mark.parametrize(
    ("status", "settle", "expected"),
    [
        (Generation.Status.FAILED, None, "not settled, expected a refund"),
        (Generation.Status.CANCELED, None, "not settled, expected a refund"),
        (Generation.Status.SUCCEEDED, None, "not settled, expected a capture"),
        (Generation.Status.SUCCEEDED, "refund", "settled by refund, expected a capture"),
        (Generation.Status.FAILED, "capture", "settled by capture, expected a refund"),
        (Generation.Status.RUNNING, "refund", "already settled (refund) while the generation is still active"),
    ],
)
def test_check_ledger_reports_a_generation_settled_wrongly_for_its_status(user, status, settle, expected):
    ledger.grant(user=user, amount=10)
    generation = start_generation(user)
    if settle:
        getattr(ledger, settle)(generation=generation)
    finish(generation, status)
    code, _, err = run("check_ledger")
    assert code == 1
    assert f"generation {generation.pk} ({status}) charge 1: {expected}" in err


def test_check_ledger_reports_a_finished_generation_that_was_never_charged(user):
    from generation.tests.factories import GenerationFactory

    generation = GenerationFactory(user=user, status=Generation.Status.SUCCEEDED)
    assert find_ledger_problems() == [f"generation {generation.pk} (succeeded): never reserved"]


def test_find_ledger_problems_can_be_scoped_to_some_users(user, other_user):
    from generation.tests.factories import GenerationFactory

    GenerationFactory(user=other_user, status=Generation.Status.SUCCEEDED)
    ledger.grant(user=user, amount=4)
    ledger.capture(generation=finish(start_generation(user), Generation.Status.SUCCEEDED))
    assert find_ledger_problems(users=[user]) == []
    assert len(find_ledger_problems()) == 1
