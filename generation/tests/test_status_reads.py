"""The status route's static SQL (generation/status_reads.py) answers exactly what the ORM
path (selectors.generation_get_with_balance + schemas.generation_out) answers."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.utils import timezone

from credits import ledger
from credits.selectors import balance_of
from generation import selectors, status_reads
from generation.models import Attempt, Generation
from generation.schemas import GenerationOut, generation_out, generation_row_out
from generation.tests.factories import AttemptFactory, GenerationFactory, MediaFactory
from stefna.errors import NotFound

pytestmark = pytest.mark.django_db


def both(user, generation_id):
    generation, balance = selectors.generation_get_with_balance(user=user, generation_id=generation_id)
    expected = generation_out(generation, remaining_coins=balance)
    actual = generation_row_out(status_reads.generation_status_row(user=user, generation_id=generation_id))
    return expected, actual


def test_a_finished_generation_with_images_and_attempts(user):
    ledger.grant(user=user, amount=7, note="test")
    generation = GenerationFactory(user=user, current_model="")
    start = timezone.now() - dt.timedelta(minutes=5)
    # Inserted out of order: the answer lists images by index and attempts by start.
    for index in (2, 0, 1):
        MediaFactory(generation=generation, index=index, is_public=index == 1, width=None if index == 2 else 512)
    second = AttemptFactory(generation=generation, position=1, model="second")
    first = AttemptFactory(
        generation=generation, position=0, model="first", status=Attempt.Status.FAILED, error="timeout", fal_job_id=""
    )
    # started_at is stamped on insert: set it afterwards, the second attempt first.
    Attempt.objects.filter(pk=second.pk).update(started_at=start + dt.timedelta(seconds=30))
    Attempt.objects.filter(pk=first.pk).update(started_at=start, finished_at=start + dt.timedelta(seconds=20))

    expected, actual = both(user, generation.pk)

    assert actual == expected
    assert [image["is_public"] for image in actual["images"]] == [False, True, False]
    assert [attempt["model"] for attempt in actual["attempts"]] == ["first", "second"]
    assert actual["model"] == "second"
    assert actual["remaining_coins"] == balance_of(user=user) > 7  # the grant, on top of the daily allowance
    # The types a client sees are the ORM's, not the database driver's (SQLite stores
    # UUIDs as hex, datetimes as text and booleans as integers).
    assert isinstance(actual["id"], uuid.UUID) and isinstance(actual["images"][0]["id"], uuid.UUID)
    assert actual["created_at"].tzinfo is not None and actual["attempts"][0]["finished_at"].tzinfo is not None
    assert actual["images"][0]["persisted"] is True
    assert GenerationOut.model_validate(actual) == GenerationOut.model_validate(expected)


def test_a_running_generation_with_logs_and_no_wallet(user):
    generation = GenerationFactory(
        user=user,
        status=Generation.Status.RUNNING,
        completed_at=None,
        queue_position=3,
        current_model="fal-ai/flux",
        logs=[{"message": "queued", "level": "info", "timestamp": "2026-11-22T10:00:00Z"}, "odd line", {"x": 1}],
    )

    expected, actual = both(user, generation.pk)

    assert actual == expected
    assert actual["remaining_coins"] == 0
    assert actual["completed_at"] is None
    assert [line["message"] for line in actual["logs"]] == ["queued", "odd line", ""]


def test_a_failed_generation_shows_its_error(user):
    generation = GenerationFactory(user=user, status=Generation.Status.FAILED, error_code="timeout", error_message="")

    expected, actual = both(user, generation.pk)

    assert actual == expected
    assert actual["error"] == {"code": "timeout", "message": "timeout"}


def test_someone_else_s_or_a_missing_generation_is_not_found(user, other_user):
    theirs = GenerationFactory(user=other_user)

    with pytest.raises(NotFound):
        status_reads.generation_status_row(user=user, generation_id=theirs.pk)
    with pytest.raises(NotFound):
        status_reads.generation_status_row(user=user, generation_id=uuid.uuid4())


def test_the_route_answers_site_relative_images_as_absolute_addresses(api_client, user):
    generation = GenerationFactory(user=user)
    MediaFactory(generation=generation, index=0, url="/media/generated/a.jpg")

    body = api_client.get(f"/api/generations/{generation.pk}").json()

    assert body["images"][0]["url"] == "http://testserver/media/generated/a.jpg"
    assert body["id"] == str(generation.pk)
