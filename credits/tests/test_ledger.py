from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from credits import ledger
from credits.exceptions import AlreadyReserved, AlreadySettled, InsufficientCredits
from credits.models import CreditEntry, Wallet
from credits.reconcile import find_ledger_problems
from credits.selectors import balance_of
from generation.models import Generation

from .helpers import finish, start_generation

pytestmark = pytest.mark.django_db

Reason = CreditEntry.Reason


@pytest.fixture(autouse=True)
def _no_allowance(settings):
    # Most tests here are about settlement arithmetic; the allowance has its own tests.
    settings.DAILY_CREDITS = 0


def test_starting_a_generation_reserves_its_cost_in_the_same_transaction(user):
    ledger.grant(user=user, amount=10)
    generation = start_generation(user)
    reserve = CreditEntry.objects.get(generation=generation)
    assert (reserve.reason, reserve.amount, reserve.charge_number, reserve.balance_after) == (Reason.RESERVE, -2, 1, 8)
    assert balance_of(user=user) == 8


def test_a_user_without_credits_gets_insufficient_credits_and_nothing_is_stored(user, settings):
    ledger.grant(user=user, amount=1)
    with pytest.raises(InsufficientCredits) as caught:
        start_generation(user)
    assert caught.value.detail["balance"] == 1
    assert caught.value.detail["cost"] == 2
    assert not Generation.objects.exists()
    assert balance_of(user=user) == 1
    assert list(CreditEntry.objects.values_list("reason", flat=True)) == [Reason.GRANT]
    uploads = settings.MEDIA_ROOT / "IMAGES_UPLOAD"
    assert not uploads.exists() or not any(path.is_file() for path in uploads.rglob("*"))


def test_refund_gives_the_reservation_back_once(user):
    ledger.grant(user=user, amount=4)
    generation = finish(start_generation(user), Generation.Status.FAILED)
    first = ledger.refund(generation=generation, note="every model failed")
    second = ledger.refund(generation=generation, note="delivered again by the poller")
    assert first is not None and first.amount == 2 and first.balance_after == 4
    assert second is None
    assert CreditEntry.objects.filter(generation=generation, reason=Reason.REFUND).count() == 1
    assert balance_of(user=user) == 4
    assert find_ledger_problems() == []


def test_capture_settles_once_and_moves_no_credits(user):
    ledger.grant(user=user, amount=4)
    generation = finish(start_generation(user), Generation.Status.SUCCEEDED)
    first = ledger.capture(generation=generation)
    assert first is not None and first.amount == 0 and first.balance_after == 2
    assert ledger.capture(generation=generation) is None
    assert ledger.refund(generation=generation) is None, "a captured generation is never refunded"
    assert balance_of(user=user) == 2
    assert find_ledger_problems() == []


def test_capture_after_refund_is_refused(user):
    ledger.grant(user=user, amount=4)
    generation = finish(start_generation(user), Generation.Status.CANCELED)
    assert ledger.refund(generation=generation) is not None
    assert ledger.capture(generation=generation) is None
    assert balance_of(user=user) == 4
    assert find_ledger_problems() == []


def test_the_database_refuses_a_second_settlement_written_behind_the_ledgers_back(user):
    ledger.grant(user=user, amount=4)
    generation = finish(start_generation(user), Generation.Status.FAILED)
    ledger.refund(generation=generation)
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditEntry.objects.create(
            user=user, amount=0, reason=Reason.CAPTURE, generation=generation, charge_number=1, balance_after=4
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditEntry.objects.create(
            user=user, amount=2, reason=Reason.REFUND, generation=generation, charge_number=1, balance_after=6
        )


@pytest.mark.parametrize(
    ("reason", "amount", "with_generation"),
    [
        (Reason.RESERVE, 2, True),  # a reservation must take credits
        (Reason.REFUND, -2, True),  # a refund must give them back
        (Reason.CAPTURE, -2, True),  # a capture moves nothing
        (Reason.GRANT, -5, False),
        (Reason.GRANT, 5, True),  # a grant has no generation
        (Reason.RESERVE, -2, False),  # a reservation needs one
    ],
)
def test_the_database_refuses_entries_whose_sign_or_link_contradicts_the_reason(user, reason, amount, with_generation):
    ledger.grant(user=user, amount=10)
    generation = start_generation(user) if with_generation else None
    with pytest.raises(IntegrityError), transaction.atomic():
        CreditEntry.objects.create(
            user=user,
            amount=amount,
            reason=reason,
            generation=generation,
            charge_number=5 if generation else None,
            balance_after=10,
        )


def test_the_database_refuses_a_negative_balance(user):
    with pytest.raises(IntegrityError), transaction.atomic():
        Wallet.objects.create(user=user, balance=-1)


def test_a_refunded_generation_can_be_reserved_again_as_a_second_charge(user):
    ledger.grant(user=user, amount=4)
    generation = finish(start_generation(user), Generation.Status.FAILED)
    ledger.refund(generation=generation)
    # A staff retry: the pipeline moves it back to queued and reserves again.
    generation = finish(generation, Generation.Status.QUEUED)
    again = ledger.reserve(user=user, generation=generation, amount=2)
    assert (again.charge_number, again.amount, again.balance_after) == (2, -2, 2)
    assert find_ledger_problems() == []
    generation = finish(generation, Generation.Status.SUCCEEDED)
    captured = ledger.capture(generation=generation)
    assert captured is not None and captured.charge_number == 2
    assert find_ledger_problems() == []


def test_an_open_or_captured_charge_cannot_be_reserved_again(user):
    ledger.grant(user=user, amount=10)
    generation = start_generation(user)
    with pytest.raises(AlreadyReserved):
        ledger.reserve(user=user, generation=generation, amount=2)
    ledger.capture(generation=finish(generation, Generation.Status.SUCCEEDED))
    with pytest.raises(AlreadySettled):
        ledger.reserve(user=user, generation=generation, amount=2)
    assert balance_of(user=user) == 8


def test_a_wrong_claim_of_a_first_charge_is_refused_by_the_database(user):
    ledger.grant(user=user, amount=10)
    generation = start_generation(user)  # charge 1 is reserved
    balance = balance_of(user=user)

    with pytest.raises(IntegrityError), transaction.atomic():
        ledger.reserve(user=user, generation=generation, amount=2, new_generation=True)

    assert balance_of(user=user) == balance
    assert CreditEntry.objects.filter(generation=generation, reason=Reason.RESERVE).count() == 1


def test_capture_many_settles_each_open_charge_once(user, django_user_model):
    other = django_user_model.objects.create_user(email="other@example.com")
    ledger.grant(user=user, amount=10)
    ledger.grant(user=other, amount=10)
    mine = [finish(start_generation(user), Generation.Status.SUCCEEDED) for _ in range(2)]
    mine.append(finish(start_generation(user), Generation.Status.FAILED))
    theirs = finish(start_generation(other), Generation.Status.SUCCEEDED)
    ledger.refund(generation=mine[2])  # settled already: skipped
    balances = (balance_of(user=user), balance_of(user=other))

    captured = ledger.capture_many(generations=[mine[0], theirs, mine[1], mine[2], mine[0]])

    assert sorted((entry.generation_id, entry.charge_number) for entry in captured) == sorted(
        [(mine[0].pk, 1), (mine[1].pk, 1), (theirs.pk, 1)]
    )
    assert all(entry.amount == 0 and entry.reason == Reason.CAPTURE for entry in captured)
    assert (balance_of(user=user), balance_of(user=other)) == balances
    assert ledger.capture(generation=mine[0]) is None  # never twice
    assert find_ledger_problems(users=[user, other]) == []


def test_refund_of_a_generation_that_never_reserved_does_nothing(user):
    from generation.tests.factories import GenerationFactory

    generation = GenerationFactory(user=user, status=Generation.Status.FAILED)
    assert ledger.refund(generation=generation) is None
    assert not CreditEntry.objects.exists()


def test_grant_adds_on_top_and_adjust_cannot_go_negative(user, admin_user):
    entry = ledger.grant(user=user, amount=7, note="support ticket 12", by=admin_user)
    assert (entry.reason, entry.amount, entry.balance_after, entry.created_by) == (Reason.GRANT, 7, 7, admin_user)
    ledger.grant(user=user, amount=-3, reason=Reason.ADJUST)
    assert balance_of(user=user) == 4
    with pytest.raises(InsufficientCredits):
        ledger.grant(user=user, amount=-5, reason=Reason.ADJUST)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError):
            ledger.grant(user=user, amount=bad)
    with pytest.raises(ValueError):
        ledger.grant(user=user, amount=5, reason=Reason.REFUND)
    assert balance_of(user=user) == 4
    assert find_ledger_problems() == []
