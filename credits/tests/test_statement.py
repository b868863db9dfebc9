"""The account page's credit statement: one row per generation, and a Balance column that
reads like a bank statement (each row's balance is the one below it plus its change)."""

from __future__ import annotations

import re

import pytest
from django.conf import settings

from credits import ledger
from credits.models import CreditEntry
from credits.statement import statement_page
from generation.models import Generation

from .helpers import finish, start_generation

pytestmark = pytest.mark.django_db


def assert_adds_up(rows, *, below: int) -> None:
    """Newest first: each balance is the next row's plus this row's change."""
    for newer, older in zip(rows, [*rows[1:], None], strict=True):
        expected = older.balance_after if older else below
        assert newer.balance_after == expected + newer.amount, [(r.label, r.amount, r.balance_after) for r in rows]


def test_generations_running_at_once_each_get_their_own_balance(client, user):
    """Two generations reserved together, then both delivered: every capture came after both
    reservations, so both "-2" rows read the same balance (26, 26) before."""
    first, second = start_generation(user), start_generation(user)
    for generation in (first, second):
        ledger.capture(generation=finish(generation, Generation.Status.SUCCEEDED))

    rows = statement_page(user=user).object_list
    assert [(row.amount, row.balance_after) for row in rows] == [
        (-2, settings.DAILY_CREDITS - 4),
        (-2, settings.DAILY_CREDITS - 2),
        (settings.DAILY_CREDITS, settings.DAILY_CREDITS),
    ]
    client.force_login(user)
    page = client.get("/accounts/").content.decode()
    balances = re.findall(r'data-label="Balance">(\d+)<', page)
    assert balances == [str(settings.DAILY_CREDITS - 4), str(settings.DAILY_CREDITS - 2), str(settings.DAILY_CREDITS)]


def test_a_later_page_continues_where_the_one_before_ended(user):
    for number in range(7):
        ledger.grant(user=user, amount=number + 1, reason=CreditEntry.Reason.ADJUST, note=f"gift {number}")
    generation = start_generation(user)  # still running: its reservation is a row too
    ledger.grant(user=user, amount=3, note="late gift")

    first, second = statement_page(user=user, per_page=4), statement_page(user=user, page_number=2, per_page=4)
    third = statement_page(user=user, page_number=3, per_page=4)
    rows = [*first.object_list, *second.object_list, *third.object_list]
    assert rows[0].balance_after == ledger.wallet_for(user=user).balance
    assert rows[-1].label == "Daily allowance" and rows[-1].balance_after == settings.DAILY_CREDITS
    assert_adds_up(rows, below=0)
    assert any(row.generation_id == generation.pk for row in rows)


def test_the_statement_shows_the_notes_people_wrote_not_the_codes_the_pipeline_wrote(client, user):
    """A refunded generation's row read "Generation refunded · all_models_failed" (its error
    code), a clawback "· refund of $4.99": staff's notes, in English whatever the reader's
    language. A grant's reason, written for the owner, stays."""
    refunded = start_generation(user)
    ledger.refund(generation=finish(refunded, Generation.Status.FAILED), note="all_models_failed")
    ledger.grant(user=user, amount=5, note="sorry about the outage")

    notes = {row.label: row.note for row in statement_page(user=user).object_list}

    assert notes["Generation refunded"] == ""
    assert notes["Grant"] == "sorry about the outage"
    client.force_login(user)
    page = client.get("/accounts/").content.decode()
    assert "all_models_failed" not in page and "· sorry about the outage" in page


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("en", "Given back: your images were lost before they could be saved"),
        ("id", "Dikembalikan: gambarmu hilang sebelum sempat disimpan"),
    ],
)
def test_a_grant_for_lost_images_written_before_it_had_a_reason_reads_as_that_reason(client, user, language, expected):
    """Grants written before `result_lost` existed are plain grants noted in English (the
    ledger is append-only, so they stay so): the statement reads them as the reason, in
    the owner's language. A person's note that only looks alike stays a note."""
    ledger.grant(user=user, amount=2, note="images of 0b6c3f7e-8a7d-4c1e-9f3a-2d5e6b7c8d9e lost at fal")
    ledger.grant(user=user, amount=1, note="images of the party lost at fal, sorry")
    user.language = language
    user.save(update_fields=["language"])
    client.force_login(user)

    page = client.get("/accounts/", headers={"accept-language": language}).content.decode()

    assert expected in page
    assert "0b6c3f7e" not in page
    assert "· images of the party lost at fal, sorry" in page
